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

Disable the plugin with ``-p no:progresskit``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from progresskit.testing import helpers

__all__ = [
    "progresskit_cli",
    "progresskit_config",
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
