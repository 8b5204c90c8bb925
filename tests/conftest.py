"""Fixtures of progresskit's own tests. Shared code that is not a fixture is in ``helpers``;
the shipped kit's fixtures (``progresskit_cli``, ``progresskit_history``, ...) are used as
they are, and ``progresskit_history`` is in force for every test (pyproject ``usefixtures``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.cli import run_cli
from progresskit.engine.history import HISTORY_ENV
from progresskit.testing import CliResult


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """The ``progresskit`` command in a subprocess (:data:`helpers.cli.run_cli`)."""
    return run_cli


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no progresskit.yaml above it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope="session", autouse=True)
def session_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ETA history of the whole session (never the user's), in force before any fixture:
    module-scoped fixtures (servers, watchers) start before the per-test
    ``progresskit_history`` does."""
    path = tmp_path_factory.mktemp("session-history") / "history.sqlite3"
    before = os.environ.get(HISTORY_ENV)
    os.environ[HISTORY_ENV] = str(path)
    yield path
    if before is None:
        os.environ.pop(HISTORY_ENV, None)
    else:
        os.environ[HISTORY_ENV] = before
