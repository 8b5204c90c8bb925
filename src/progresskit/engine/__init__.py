"""Layer 4, the engine: queries and sessions, detection, the status rules, liveness, the ETA
estimator and its history, the monitor. Every policy decision lives here.
"""
