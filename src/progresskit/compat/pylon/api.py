"""Seed 001's (Pylon's) run-status API, for callers of every Pylon version.

Pylon's signatures changed across versions (docs/compat-pylon.md has the table); each
function here accepts every form, decided by what the caller passed, and raises a
``TypeError`` naming the forms when a call fits none or more than one. Statuses are in
seed 001's five-word vocabulary (``Status.legacy``). These are library queries: they
write nothing, not even ``progress.json`` or the ETA history.
"""

from __future__ import annotations

import inspect
import json
import os
import stat
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from progresskit.compat.pylon.configs import (
    PylonConfigWarning,
    read_pylon_config,
    runner_class_name,
    translate_config,
)
from progresskit.compat.pylon.processes import as_process_info, config_to_process_info
from progresskit.compat.pylon.trackers import EvaluatorProgressTracker, TrainerProgressTracker
from progresskit.engine.detection import detect, make_tracker
from progresskit.engine.query import session as _session
from progresskit.engine.session import Tracking, broken_status
from progresskit.errors import NoTrackerError, ProgresskitError
from progresskit.formats.fileio import StatKey, is_racy
from progresskit.formats.lease import LEASE_FILENAME
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus, Status
from progresskit.plugin.coreconfig import DEFAULT_OUTDATED_DAYS, DEFAULT_SLEEP_TIME
from progresskit.plugin.manager import PluginManager, default_plugin_manager
from progresskit.plugin.tracker import BaseProgressTracker

__all__ = [
    "create_progress_tracker",
    "detect_runner_type",
    "get_all_run_status",
    "get_config",
    "get_run_status",
    "get_session_progress",
    "get_work_dir",
    "pylon_work_dir",
]

_CONFIG_SUFFIXES = (".py", ".yaml", ".yml", ".json")
_EVALUATOR_FILE = "evaluation_scores.json"
_PYLON_PATTERNS = (
    "  - Trainer: epoch_0/ directory OR 'epochs' in config",
    "  - Evaluator: evaluation_scores.json file OR 'Evaluator' in runner class name",
)


# -- paths ------------------------------------------------------------------------------


def get_work_dir(config: str) -> str:
    """A run's work dir from its config path: ``configs/a/b.py`` -> ``logs/a/b``.

    A directory is its own work dir. (The path Pylon's status calls report is
    :func:`pylon_work_dir`.)
    """
    if os.path.isdir(config):
        return config
    path = Path(config)
    if path.suffix not in _CONFIG_SUFFIXES or "configs" not in path.parts:
        raise ValueError(
            f"cannot derive a work dir from config {config!r}: expected a directory, or a "
            f"config file ({', '.join(_CONFIG_SUFFIXES)}) under a 'configs' directory"
        )
    parts = list(path.with_suffix("").parts)
    parts[parts.index("configs")] = "logs"
    return str(Path(*parts))


def pylon_work_dir(config: str) -> str:
    """The work dir exactly as Pylon's run-status code spells it (``RunStatus.work_dir``).

    A config under ``./configs`` (relative or absolute) gives ``./logs/<rel>`` without the
    extension: ``<cwd>/configs/x.py`` -> ``./logs/x``. A config elsewhere falls back to
    :func:`get_work_dir` (Pylon's ``./logs/../..`` paths named no real directory). A path
    without a config suffix is a work dir already.
    """
    if not config.endswith(_CONFIG_SUFFIXES) or os.path.isdir(config):
        return config  # a work dir, given as such (whether it exists is the caller's test)
    relative = os.path.relpath(os.path.abspath(config), os.path.abspath("configs"))
    if relative.split(os.sep)[0] != os.pardir:
        return os.path.join("./logs", os.path.splitext(relative)[0])
    return get_work_dir(config)


def get_config(work_dir: str) -> str:
    """Pylon's inverse of the work dir rule: ``./logs/a/b`` -> ``./configs/a/b.py``."""
    return os.path.join("./configs", os.path.relpath(work_dir, "./logs")) + ".py"


# -- configs and detection ----------------------------------------------------------------


def _read_values(pm: PluginManager, config_file: str | None) -> dict[str, Any]:
    """The progresskit values of a Pylon config file, if it exists and can be read."""
    if config_file is None or not config_file.endswith(".py") or not os.path.isfile(config_file):
        return {}
    try:
        raw = read_pylon_config(config_file)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        warnings.warn(PylonConfigWarning(f"{config_file}: not read: {exc}"), stacklevel=3)
        return {}
    return translate_config(pm, raw, config_file)


def _listing(work_dir: str) -> list[str]:
    try:
        return sorted(os.listdir(work_dir))
    except OSError:
        return []


def _no_runner_message(pm: PluginManager, work_dir: str, config: Mapping[str, Any] | None) -> str:
    missing = "" if os.path.isdir(work_dir) else " (the directory does not exist)"
    keys = list(config.keys()) if isinstance(config, Mapping) and config else None
    lines = [
        f"Cannot detect runner type for work_dir: {work_dir}{missing}",
        f"Available files: {_listing(work_dir)}",
        f"Config keys: {keys}" if keys else "No config provided",
        "Expected patterns:",
        *_PYLON_PATTERNS,
        *(f"  - {d.runner_type}: {d.expects}" for d in pm.runner_descriptions()),
        "Unable to detect runner type: pin 'runner_type' in the config, or check the path.",
    ]
    return "\n".join(lines)


def _detect(
    pm: PluginManager,
    work_dir: str,
    values: Mapping[str, Any],
    shown: Mapping[str, Any] | None,
) -> str:
    """Seed 001's order: evaluation_scores.json, epoch_0/, the runner class, 'epochs'.

    Other installed trackers' file evidence is asked after the two Pylon files; a pinned
    ``runner_type`` wins over everything.
    """
    pinned = values.get("runner_type")
    if pinned:
        return str(pinned)
    if os.path.isfile(os.path.join(work_dir, _EVALUATOR_FILE)):
        return "evaluator"
    if os.path.isdir(os.path.join(work_dir, "epoch_0")):
        return "trainer"
    if os.path.isdir(work_dir):
        try:
            return detect(pm, work_dir, values, allow_config=False)
        except NoTrackerError:
            pass
    name = runner_class_name(values.get("runner"))
    if "Evaluator" in name:
        return "evaluator"
    if "Trainer" in name:
        return "trainer"
    if values.get("epochs") is not None:
        return "trainer"
    raise NoTrackerError(_no_runner_message(pm, work_dir, shown))


def detect_runner_type(
    work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None
) -> str:
    """The runner type of ``work_dir`` (seed 001's API and order).

    ``config`` is a Pylon config dict (any keys; classes as values) or progresskit values.
    Raises :class:`~progresskit.errors.NoTrackerError` (a ``ValueError``) listing the files
    seen, the config keys and the expected patterns when nothing tells.
    """
    pm = default_plugin_manager()
    path = os.fspath(work_dir)
    return _detect(pm, path, translate_config(pm, config, f"config of {path}"), config)


def create_progress_tracker(
    work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None
) -> BaseProgressTracker:
    """A new tracker for ``work_dir`` of the detected runner type (seed 001's API).

    Trainer and evaluator runs get Pylon's tracker classes (``tracker.config is config``);
    other runner types their plugin's tracker.
    """
    runner_type = detect_runner_type(work_dir, config)
    if runner_type == "trainer":
        return TrainerProgressTracker(work_dir, config)
    if runner_type == "evaluator":
        return EvaluatorProgressTracker(work_dir, config)
    pm = default_plugin_manager()
    path = os.fspath(work_dir)
    values = pm.schema.validate(translate_config(pm, config, f"config of {path}"), "config")
    return make_tracker(pm, runner_type, path, values)


# -- signatures ---------------------------------------------------------------------------

_P = inspect.Parameter


def _signature(*params: tuple[str, Any]) -> inspect.Signature:
    return inspect.Signature(
        [_P(name, _P.POSITIONAL_OR_KEYWORD, default=default) for name, default in params]
        + [
            _P(flag, _P.KEYWORD_ONLY, default=False)
            for flag in ("force_progress_recompute", "force_refresh")
            if flag not in {name for name, _ in params}
        ]
    )


_REQUIRED = _P.empty


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_files(value: Any) -> bool:
    return value is None or (
        isinstance(value, (list, tuple)) and all(isinstance(f, str) for f in value)
    )


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "config": lambda v: isinstance(v, (str, os.PathLike)),
    "config_files": lambda v: isinstance(v, (list, tuple)),
    "expected_files": _is_files,
    "epochs": lambda v: v is None or _is_int(v),
    "config_to_process_info": lambda v: v is None or isinstance(v, Mapping),
    "sleep_time": _is_number,
    "outdated_days": _is_number,
    "force_progress_recompute": lambda v: isinstance(v, bool),
    "force_refresh": lambda v: isinstance(v, bool),
    "system_monitor": lambda _v: True,
}


@attrs.frozen
class _Form:
    text: str
    signature: inspect.Signature
    #: Parameters that must not be None in this form (Pylon asserted them).
    required: tuple[str, ...] = ()


def _bind(function: str, forms: Sequence[_Form], args: Any, kwargs: Any) -> dict[str, Any]:
    fits: list[tuple[_Form, dict[str, Any]]] = []
    for form in forms:
        try:
            bound = form.signature.bind(*args, **kwargs)
        except TypeError:
            continue
        bound.apply_defaults()
        values = dict(bound.arguments)
        if all(_CHECKS[name](value) for name, value in values.items()) and all(
            values[name] is not None for name in form.required
        ):
            fits.append((form, values))
    if len(fits) == 1:
        return fits[0][1]
    listed = "\n".join(f"  {form.text}" for form in forms)
    shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    what = "fits none of" if not fits else "is ambiguous between"
    raise TypeError(
        f"{function}({shown}) {what} the accepted forms:\n{listed}\n"
        "Pass the arguments by keyword to say which."
    )


_RUN_FORMS = (
    _Form(
        "get_run_status(config, expected_files, epochs, config_to_process_info, "
        "sleep_time=86400, outdated_days=30)  # Pylon V3-V5, progresskit 0.1",
        _signature(
            ("config", _REQUIRED),
            ("expected_files", _REQUIRED),
            ("epochs", _REQUIRED),
            ("config_to_process_info", _REQUIRED),
            ("sleep_time", DEFAULT_SLEEP_TIME),
            ("outdated_days", DEFAULT_OUTDATED_DAYS),
        ),
    ),
    _Form(
        "get_run_status(config, epochs, config_to_process_info, sleep_time=86400, "
        "outdated_days=30, force_progress_recompute=False)  # Pylon V7-V8",
        _signature(
            ("config", _REQUIRED),
            ("epochs", _REQUIRED),
            ("config_to_process_info", _REQUIRED),
            ("sleep_time", DEFAULT_SLEEP_TIME),
            ("outdated_days", DEFAULT_OUTDATED_DAYS),
            ("force_progress_recompute", False),
        ),
        required=("epochs",),
    ),
)

_ALL_FORMS = (
    _Form(
        "get_all_run_status(config_files, expected_files, epochs, sleep_time=86400, "
        "outdated_days=30, system_monitor=None)  # Pylon V2-V5, progresskit 0.1",
        _signature(
            ("config_files", _REQUIRED),
            ("expected_files", _REQUIRED),
            ("epochs", _REQUIRED),
            ("sleep_time", DEFAULT_SLEEP_TIME),
            ("outdated_days", DEFAULT_OUTDATED_DAYS),
            ("system_monitor", None),
        ),
    ),
    _Form(
        "get_all_run_status(config_files, epochs, sleep_time=86400, outdated_days=30, "
        "system_monitor=None, force_progress_recompute=False)  # Pylon V7-V8",
        _signature(
            ("config_files", _REQUIRED),
            ("epochs", _REQUIRED),
            ("sleep_time", DEFAULT_SLEEP_TIME),
            ("outdated_days", DEFAULT_OUTDATED_DAYS),
            ("system_monitor", None),
            ("force_progress_recompute", False),
        ),
        required=("epochs",),
    ),
)


# -- status -------------------------------------------------------------------------------


@attrs.frozen
class _Query:
    epochs: int | None
    expected_files: tuple[str, ...] | None
    sleep_time: float
    outdated_days: float
    force: bool

    def defaults(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "sleep_time": self.sleep_time,
            "outdated_days": self.outdated_days,
        }
        if self.epochs is not None:
            values["epochs"] = self.epochs
        if self.expected_files:
            values["expected_files"] = list(self.expected_files)
        return values


def _query(values: Mapping[str, Any]) -> _Query:
    files = values.get("expected_files")
    return _Query(
        epochs=values.get("epochs"),
        expected_files=None if files is None else tuple(files),
        sleep_time=values["sleep_time"],
        outdated_days=values["outdated_days"],
        force=bool(values.get("force_progress_recompute") or values.get("force_refresh")),
    )


def _missing_run(
    config: str, work_dir: str, runner_type: str, process: ProcessInfo | None, total: Any
) -> RunStatus:
    # Pylon's launcher relaunches the configs whose status is 'failed': a run that never
    # started is one of them (unless a process is known to be starting it).
    status = Status.STUCK if process is not None else Status.FAILED
    reason = f"work dir {work_dir} does not exist"
    progress = ProgressInfo(
        runner_type=runner_type,
        # Never started: nothing done is a fact here, and Pylon's callers add these up.
        completed_epochs=0,
        progress_percentage=0.0,
        total_epochs=total if _is_int(total) and total >= 0 else None,
        error_message=reason,
    )
    return RunStatus(config, work_dir, progress, status, process, reason)


#: (work dir, the config's runner evidence) -> (the dir's stat key, runner type): creating
#: epoch_0/ or evaluation_scores.json changes the key, so a verdict is reused only while
#: the directory is unchanged (and not changed too recently for its mtime to tell).
_detected: dict[tuple[str, tuple[Any, ...]], tuple[StatKey, str]] = {}
_MAX_DETECTED = 100_000


def _runner_type(pm: PluginManager, work_dir: str, key: StatKey, values: Mapping[str, Any]) -> str:
    evidence = (
        values.get("runner_type"),
        runner_class_name(values.get("runner")),
        values.get("epochs") is not None,
    )
    known = _detected.get((work_dir, evidence))
    if known is not None and known[0] == key:
        return known[1]
    read_at = time.time_ns()
    runner_type = _detect(pm, work_dir, values, values)
    if not is_racy((key,), read_at):
        if len(_detected) >= _MAX_DETECTED:
            _detected.clear()
        _detected[(work_dir, evidence)] = (key, runner_type)
    return runner_type


class _Statuses:
    """One status query over some configs: the sessions it uses, by config values."""

    def __init__(self, pm: PluginManager, query: _Query):
        self.pm = pm
        self.query = query
        self._sessions: dict[tuple[str, str], Tracking] = {}

    def _session(self, file_values: dict[str, Any], runner_type: str) -> Tracking:
        # Runs without a config file of their own (the common case for a big tree) share
        # one session per runner type; the key of the shared cache is built once for them.
        key = (
            json.dumps(file_values, sort_keys=True, default=str) if file_values else "",
            runner_type,
        )
        found = self._sessions.get(key)
        if found is None:
            values = {**self.query.defaults(), **file_values, "runner_type": runner_type}
            # Seed 001's API judges a run's silence by sleep_time alone, as it always did.
            found = self._sessions[key] = _session(None, values, rhythm=False)
        return found

    def status(self, config: str, process: ProcessInfo | None) -> RunStatus:
        work_dir = pylon_work_dir(config)
        file_values = _read_values(self.pm, config)
        values = {**self.query.defaults(), **file_values}
        try:
            st = os.stat(work_dir)
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            name = runner_class_name(values.get("runner"))
            runner_type = "evaluator" if "Evaluator" in name else "trainer"
            return _missing_run(config, work_dir, runner_type, process, values.get("epochs"))
        # stat_key's key, from the one stat that also tells a directory from a file.
        dir_key = (st.st_mtime_ns, st.st_size, st.st_ino)
        session = self._session(file_values, _runner_type(self.pm, work_dir, dir_key, values))
        if self.query.force:
            session.tracker_for(work_dir).get_progress(force_refresh=True)
        result = session.status(
            work_dir, key=config, process=process, discover_processes=False, dir_key=dir_key
        )
        status, reason = result.status.legacy, result.reason
        if status is Status.RUNNING and not os.path.exists(os.path.join(work_dir, LEASE_FILENAME)):
            # Pylon's callers count a log write as the only sign of life: fresh epoch files
            # under a silent log are a dead or hung job (their launcher relaunches 'failed').
            tracker = session.tracker_for(work_dir)
            log = tracker.last_log_update()
            sleep_time = float(tracker.config["sleep_time"])
            if log is None or time.time() - log > sleep_time:
                status = Status.STUCK if process is not None else Status.FAILED
                heard = "no log" if log is None else f"no log write for {time.time() - log:.0f}s"
                reason = (
                    f"{heard} (sleep_time {sleep_time:g}s) matching "
                    f"{tracker.get_log_pattern()}; epoch files alone are not a sign of life"
                )
        progress = _seed(result.progress)
        if status is result.status and reason == result.reason and progress is result.progress:
            return result  # already in seed 001's words (finished, failed...): no copy
        return attrs.evolve(result, status=status, reason=reason, progress=progress)


def _seed(progress: ProgressInfo) -> ProgressInfo:
    """``progress`` in seed 001's shape: its callers read ``progress_percentage`` and
    ``completed_epochs`` as numbers, so unknown (``None`` natively) is their 0 here
    (docs/compat-pylon.md). Pylon's own runner types always know both."""
    if progress.progress_percentage is not None and progress.completed_epochs is not None:
        return progress
    return attrs.evolve(
        progress,
        progress_percentage=progress.progress_percentage or 0.0,
        completed_epochs=progress.completed_epochs or 0,
    )


def _process_for(mapping: Mapping[str, Any], config: str) -> ProcessInfo | None:
    record = mapping.get(config)
    return None if record is None else as_process_info(record)


def get_run_status(config: str, *args: Any, **kwargs: Any) -> RunStatus:
    """The status of the run of ``config`` (a Pylon config path, or a work dir).

    Accepts Pylon's forms (see the module and docs/compat-pylon.md), plus
    ``force_progress_recompute=`` / ``force_refresh=`` on every form. A work dir that was
    never created is a ``failed`` status (``stuck`` if a process is known); a directory
    whose runner type cannot be told raises the seed's detection ``ValueError``.
    """
    values = _bind("get_run_status", _RUN_FORMS, (config, *args), kwargs)
    pm = default_plugin_manager()
    key = os.fspath(values["config"])
    processes = values["config_to_process_info"] or {}
    return _Statuses(pm, _query(values)).status(key, _process_for(processes, key))


def get_all_run_status(
    config_files: Sequence[str], *args: Any, **kwargs: Any
) -> dict[str, RunStatus]:
    """Config -> :class:`RunStatus` for every config, in the order given.

    Accepts Pylon's forms (see docs/compat-pylon.md). ``system_monitor`` is Pylon's
    system monitor (its ``connected_gpus``), a list of GPU records, a ``{config:
    process}`` mapping, or ``None`` (no processes known); ``config_to_process_info=`` is
    accepted as a keyword too. A run that cannot be read is a ``failed`` entry with the
    reason, never an exception that hides the other runs.
    """
    mapping = kwargs.pop("config_to_process_info", None)
    values = _bind("get_all_run_status", _ALL_FORMS, (config_files, *args), kwargs)
    source = values["system_monitor"] if mapping is None else mapping
    processes = config_to_process_info(source)
    statuses = _Statuses(default_plugin_manager(), _query(values))
    results: dict[str, RunStatus] = {}
    for config in values["config_files"]:
        key = os.fspath(config)
        process = processes.get(key)
        try:
            results[key] = statuses.status(key, process)
        except (ProgresskitError, ValueError) as exc:
            legacy = broken_status(key, key, str(exc), process=process)
            results[key] = attrs.evolve(legacy, status=legacy.status.legacy)
    return results


# -- progress -----------------------------------------------------------------------------


def get_session_progress(
    work_dir: str,
    expected_files: Sequence[str],
    epochs: int | bool | None = None,
    *,
    force_progress_recompute: bool = False,
) -> Any:
    """Progress of the trainer run in ``work_dir`` (Pylon's ``session_progress``).

    Returns a :class:`ProgressInfo`. The oldest Pylon form passed the total as a third
    positional ``epochs`` and got the completed-epoch count (an ``int``, capped at
    ``epochs``); that form is kept. A third positional ``bool`` is Pylon V8's
    ``force_progress_recompute``. Totals and early stopping come from the run's Pylon
    config (``./configs/<rel>.py`` of ``./logs/<rel>``), read without executing it.
    Nothing is written: ``progress.json`` is read when it is newer than the epochs it
    summarises, and ignored (recomputed) when stale, empty or corrupt.
    """
    if isinstance(epochs, bool):
        force_progress_recompute, epochs = epochs, None
    if not _is_files(expected_files) or not expected_files:
        raise TypeError(
            f"get_session_progress: expected_files must be a non-empty list of file names, "
            f"got {expected_files!r}"
        )
    pm = default_plugin_manager()
    path = os.fspath(work_dir)
    values: dict[str, Any] = {"expected_files": list(expected_files)}
    if epochs is not None:
        values["epochs"] = epochs
    values.update(_read_values(pm, get_config(path)))
    if epochs is not None:
        values["epochs"] = epochs
    tracker = make_tracker(pm, "trainer", path, pm.schema.validate(values, "config"))
    progress = tracker.get_progress(force_refresh=force_progress_recompute)
    if epochs is not None:
        # Seed 001 returns a count here; a trainer always has one (0 before any epoch).
        return min(progress.completed_epochs or 0, epochs)
    return progress
