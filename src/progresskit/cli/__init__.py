"""The command line: one module per command; :mod:`progresskit.cli.main` dispatches."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``from progresskit.cli import main`` kept working when cli.py became this package.
    if name == "main":
        from progresskit.cli.main import main

        return main
    raise AttributeError(f"module 'progresskit.cli' has no attribute {name!r}")
