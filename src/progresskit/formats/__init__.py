"""Layer 1, wire formats: the documents jobs write and trackers read, one module each.

Stdlib and attrs only, so that the producer side (what a training job imports) can use them
without loading the engine.
"""
