"""Layer 2, the producer side: what a training job imports to report on itself.

Stdlib and attrs only: importing this package never loads pluggy, yaml, sqlite3,
watchfiles, rich or starlette (checked by import-linter contracts and a test).
"""
