"""Pylon's tracker classes: its constructor checks and attributes over progresskit's trackers.

``TrainerProgressTracker(work_dir, config)`` and ``EvaluatorProgressTracker`` as Pylon's
callers build them: ``work_dir`` is checked at construction (Pylon asserted it), and
``tracker.config`` is the object the caller passed (``None`` stays ``None``). The reading
is done by the builtin trackers, on the caller's config translated into progresskit keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from progresskit.builtin.evaluator import EvaluatorProgressTracker as _NativeEvaluator
from progresskit.builtin.trainer import TrainerProgressTracker as _NativeTrainer
from progresskit.compat.pylon.configs import translate_config
from progresskit.compat.pylon.errors import PylonTypeError, PylonValueError
from progresskit.formats.fileio import StatKey
from progresskit.model.core import ProgressInfo
from progresskit.plugin.manager import default_plugin_manager
from progresskit.plugin.tracker import BaseProgressTracker as _PluginBaseTracker

__all__ = [
    "BaseProgressTracker",
    "EvaluatorProgressTracker",
    "TrainerProgressTracker",
    "checked_work_dir",
]


def checked_work_dir(work_dir: Any) -> str:
    """``work_dir`` as a path string, or the error Pylon's constructor raised (as an
    ``AssertionError`` that is also a ``TypeError``/``ValueError``)."""
    if not isinstance(work_dir, (str, os.PathLike)):
        raise PylonTypeError(
            f"work_dir must be str (or a path), got {type(work_dir).__name__} {work_dir!r}"
        )
    path = os.fspath(work_dir)
    if not isinstance(path, str):
        raise PylonTypeError(f"work_dir must be str, got bytes {path!r}")
    if not os.path.exists(path):
        raise PylonValueError(f"work_dir does not exist: {path}")
    return path


class BaseProgressTracker(_PluginBaseTracker):
    """Pylon's ``BaseProgressTracker``: ``work_dir`` checked at construction, ``config``
    kept as passed (``None`` stays ``None``). A subclass implements Pylon's four methods
    (``get_runner_type``, ``get_expected_files``, ``get_log_pattern``,
    ``calculate_progress``)."""

    def __init__(self, work_dir: Any, config: Mapping[str, Any] | None = None):
        path = checked_work_dir(work_dir)
        super().__init__(path, config)
        # Pylon's callers compare tracker.config with what they passed (None included).
        self.config = config  # type: ignore[assignment]
        self.work_dir = work_dir if isinstance(work_dir, str) else path

    def get_progress(
        self, force_refresh: bool = False, *, force_progress_recompute: bool = False
    ) -> ProgressInfo:
        """Progress, reused while the files it was read from are unchanged. Either flag
        (Pylon V5-V7 ``force_refresh``, V8 ``force_progress_recompute``) reads again."""
        return super().get_progress(force_refresh or force_progress_recompute)


class _PylonTracker(BaseProgressTracker):
    #: The builtin tracker that does the reading.
    native_class: ClassVar[type[_PluginBaseTracker]]

    def __init__(self, work_dir: Any, config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        pm = default_plugin_manager()
        where = f"config of {self.work_dir}"
        values = pm.schema.validate(translate_config(pm, config, where), "config")
        # The builtin tracker reads by the translated values; self.config stays Pylon's.
        self._native = self.native_class(os.fspath(work_dir), values)

    def get_runner_type(self) -> str:
        return self._native.get_runner_type()

    def get_expected_files(self) -> list[str]:
        return self._native.get_expected_files()

    def get_log_pattern(self) -> str:
        return self._native.get_log_pattern()

    def calculate_progress(self, force_progress_recompute: bool = False) -> ProgressInfo:
        """Progress read now (``force_progress_recompute``: Pylon V8's flag; this never
        uses a cache, so it changes nothing)."""
        return self._native.calculate_progress()

    def get_progress(
        self, force_refresh: bool = False, *, force_progress_recompute: bool = False
    ) -> ProgressInfo:
        return self._native.get_progress(force_refresh or force_progress_recompute)

    def is_complete(self) -> bool:
        return self._native.is_complete()

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        return self._native.fingerprint()


class TrainerProgressTracker(_PylonTracker):
    """Pylon's trainer tracker: ``epoch_N/`` directories, ``train_val*.log``."""

    runner_type = _NativeTrainer.runner_type
    native_class = _NativeTrainer


class EvaluatorProgressTracker(_PylonTracker):
    """Pylon's evaluator tracker: ``evaluation_scores.json``, ``eval_*.log``."""

    runner_type = _NativeEvaluator.runner_type
    native_class = _NativeEvaluator
