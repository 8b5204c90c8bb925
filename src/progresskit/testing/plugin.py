"""progresskit's pytest plugin, enabled by installing progresskit (entry point ``pytest11``).

Fixtures (each a factory, so a test can make as many as it needs):

``progresskit_run_dir(name, files=None, *, age=None)``
    a directory under ``tmp_path`` holding ``files`` (see :func:`~progresskit.testing.
    helpers.make_run_dir`).
``progresskit_config(directory, values)``
    writes ``values`` as ``directory/progresskit.yaml``.
``progresskit_cli(*args, cwd=None, env=None, in_process=True)``
    runs the ``progresskit`` command; returns a :class:`~progresskit.testing.CliResult`
    (``.ret``, ``.stdout``, ``.stderr``, ``.json()``).
``progresskit_plugin_manager(only=None, extra_plugins=())``
    a fresh plugin manager with only the chosen plugins loaded.
``progresskit_history``
    not a factory: the path of this test's own, empty ETA history database
    (``$PROGRESSKIT_HISTORY`` points there for the test's duration).

Disable the plugin with ``-p no:progresskit``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from progresskit.engine.history import HISTORY_ENV
from progresskit.testing import helpers

__all__ = [
    "progresskit_cli",
    "progresskit_config",
    "progresskit_history",
    "progresskit_plugin_manager",
    "progresskit_run_dir",
]


@pytest.fixture
def progresskit_run_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``progresskit_run_dir("run1", {"trainer_state.json": {...}}, age=60)``."""

    def make(
        name: str, files: dict[str, helpers.FileContent] | None = None, *, age: float | None = None
    ) -> Path:
        return helpers.make_run_dir(tmp_path / name, files, age=age)

    return make


@pytest.fixture
def progresskit_config() -> Callable[..., Path]:
    """Factory: ``progresskit_config(run_dir, {"sleep_time": 60})`` -> the YAML file."""
    return helpers.write_config


@pytest.fixture
def progresskit_cli() -> Callable[..., helpers.CliResult]:
    """Factory: ``progresskit_cli("status", str(run), "--json").json()``."""
    return helpers.run_cli


@pytest.fixture
def progresskit_plugin_manager() -> Callable[..., object]:
    """Factory: ``progresskit_plugin_manager(only=["trainer"])``."""
    return helpers.plugin_manager


@pytest.fixture
def progresskit_history(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The path of this test's own ETA history database, not yet created.

    ``$PROGRESSKIT_HISTORY`` points at it until the test ends (the CLI run in a subprocess
    inherits it), so the runs one test finishes never become another test's prior and
    a test suite never writes to the user's history.
    """
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    monkeypatch.setenv(HISTORY_ENV, str(path))
    return path
