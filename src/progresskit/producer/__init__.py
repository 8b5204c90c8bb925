"""Layer 2, the producer side: what a training job imports to report on itself.

Stdlib and attrs only: it never loads pluggy, cattrs, yaml, sqlite3, watchfiles, rich,
psutil (on Linux) or starlette (checked by import-linter contracts and
tests/test_producer_imports.py). Importing it loads the standard library alone; attrs comes
with the first lease, logging with the first message (benchmarks/imports.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    import logging


def logger(name: str) -> logging.Logger:
    """The logger ``name``. logging is imported with the first message, not with the
    producer: a job that runs without trouble never logs one."""
    import logging

    return logging.getLogger(name)
