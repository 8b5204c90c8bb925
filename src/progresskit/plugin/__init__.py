"""Layer 3, the plugin API: hook specifications, the manager, the typed hook facade, the
tracker and sink bases and the config schema. Third-party plugins use only this layer and
the model (through the public names of :mod:`progresskit`).
"""
