"""Compatibility with the five seed systems' APIs, behind its own boundary."""
