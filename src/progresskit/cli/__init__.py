"""The command line: one module per command; :mod:`progresskit.cli.main` dispatches."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def __getattr__(name: str) -> Callable[[Sequence[str] | None], int]:
    # ``from progresskit.cli import main``, the console script of an install made when the
    # command line was one module, must get the function: importing the submodule binds
    # its module object to this package's ``main``, so the function is bound over it.
    if name == "main":
        from progresskit.cli.main import main

        globals()["main"] = main
        return main
    raise AttributeError(f"module 'progresskit.cli' has no attribute {name!r}")
