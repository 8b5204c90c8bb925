"""A run of MLflow's file store: ``mlruns/<experiment_id>/<run_id>/``.

What ``FileStore`` (``mlflow/store/tracking/file_store.py``) writes:

- ``meta.yaml``: run_id, run_name, status (a number, vocabulary.py), start_time and
  end_time (ms), lifecycle_stage, ...; rewritten in place at ``end_run`` (not atomic), so a
  reader may find it empty or cut short: the last good reading is kept, with a warning;
- ``metrics/<key>``: one line per value, ``<timestamp_ms> <value> <step>``, appended (one
  ``open(..., "a")`` per value); a key with ``/`` is a subdirectory. Read from the last
  offset, so a growing run costs what it appended; a line without its newline is still
  being written and waits for the next read;
- ``params/<key>``: the value, written once.

The experiment's name is in ``mlruns/<experiment_id>/meta.yaml``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from progresskit import BaseProgressTracker, ProgressInfo, StatKey, stat_key
from progresskit_mlflow.record import (
    RECENT_MOMENTS,
    RUNNER_TYPE,
    Latest,
    RunRecord,
    newest_moments,
    progress_of,
    update_times,
    with_eta,
)
from progresskit_mlflow.vocabulary import status_word

__all__ = ["META_FILE", "FileStoreRunTracker", "MetricFile"]

META_FILE = "meta.yaml"
METRICS_DIR = "metrics"
PARAMS_DIR = "params"
#: Bytes read at a time from a metric file: memory stays bounded on a long run's first read.
_CHUNK = 1 << 22
#: Malformed lines reported per metric file; the rest are counted.
_SHOWN_PROBLEMS = 3

#: The safe loader, in its C build where PyYAML has one: a scan parses a meta.yaml per run.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(raw: bytes) -> Any:
    return yaml.load(raw, Loader=_SAFE_LOADER)


def _walk_files(root: str) -> Iterator[tuple[str, str]]:
    """``(key, path)`` of every file below ``root``; a key holds ``/`` for each level."""
    stack = [("", root)]
    while stack:
        prefix, directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = [(e.name, e.path, e.is_dir()) for e in it]
        except OSError:
            continue  # not created yet, or removed while listing
        for name, path, is_dir in entries:
            if is_dir:
                stack.append((f"{prefix}{name}/", path))
            else:
                yield f"{prefix}{name}", path


class MetricFile:
    """One ``metrics/<key>`` file, read incrementally: its latest value and its newest
    logging moments."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.offset = 0
        self.inode: int | None = None
        self.lines = 0
        self.latest: Latest | None = None
        self.recent: collections.deque[tuple[int, int]] = collections.deque(
            maxlen=RECENT_MOMENTS
        )
        self.problems: list[str] = []
        self.bad_lines = 0

    def _reset(self, inode: int) -> None:
        self.__init__(self.key)  # type: ignore[misc]
        self.inode = inode

    def update(self, path: str) -> None:
        """Read what was appended since the last call (all of it after a rewrite)."""
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if info.st_ino != self.inode or info.st_size < self.offset:
                self._reset(info.st_ino)
            fh.seek(self.offset)
            pending = b""
            while chunk := fh.read(_CHUNK):
                data = pending + chunk
                end = data.rfind(b"\n")
                if end < 0:
                    pending = data
                    continue
                self._parse(data[:end])
                self.offset += end + 1
                pending = data[end + 1 :]

    def _parse(self, block: bytes) -> None:
        latest = self.latest
        best = (latest.step, latest.timestamp_ms) if latest is not None else None
        recent = self.recent
        for raw in block.split(b"\n"):
            self.lines += 1
            fields = raw.split()
            try:
                # Before MLflow 1.0 a line had no step: it is step 0.
                if len(fields) not in (2, 3):
                    raise ValueError
                timestamp = int(fields[0])
                value = float(fields[1])
                step = int(fields[2]) if len(fields) == 3 else 0
            except ValueError:
                self.bad_lines += 1
                if len(self.problems) < _SHOWN_PROBLEMS:
                    text = raw.decode("utf-8", "replace")[:80]
                    self.problems.append(
                        f"line {self.lines}: expected '<timestamp_ms> <value> <step>', "
                        f"got {text!r}"
                    )
                continue
            if best is None or (step, timestamp) >= best:
                best = (step, timestamp)
                latest = Latest(value, step, timestamp)
            if recent and recent[-1][0] == timestamp:
                if step > recent[-1][1]:
                    recent[-1] = (timestamp, step)
            else:
                recent.append((timestamp, step))
        self.latest = latest


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class FileStoreRunTracker(BaseProgressTracker):
    """Progress of one run directory of MLflow's file store."""

    runner_type = RUNNER_TYPE
    update_times_recorded = True
    expected_files = (META_FILE,)

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._metrics: dict[str, MetricFile] = {}
        #: Stat keys of what the last read listed below metrics/ (new keys change them).
        self._metric_paths: dict[str, str] = {}
        self._meta: dict[str, Any] | None = None
        self._params: dict[str, str] = {}
        self._params_key: tuple[StatKey | None, ...] | None = None
        self._experiment: tuple[StatKey | None, str | None] = (None, None)
        self._record: RunRecord | None = None

    # -- caching -------------------------------------------------------------------------

    def _metric_dirs(self) -> list[str]:
        root = os.path.join(self.work_dir, METRICS_DIR)
        dirs = {root}
        for key in self._metric_paths:
            parts = key.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                dirs.add(os.path.join(root, *parts[:depth]))
        return sorted(dirs)

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        self.entries()
        join = os.path.join
        keys: list[StatKey | None] = [self.listing_key(), stat_key(join(self.work_dir, META_FILE))]
        keys += [stat_key(d) for d in self._metric_dirs()]
        keys += [stat_key(path) for path in self._metric_paths.values()]
        keys.append(stat_key(join(self.work_dir, PARAMS_DIR)))
        return tuple(keys)

    def update_times(self) -> Sequence[float]:
        return update_times(self._record) if self._record is not None else ()

    def is_complete(self) -> bool:
        return self.get_progress().source_status == "FINISHED"

    # -- reading -------------------------------------------------------------------------

    def _read_meta(self, problems: list[str]) -> dict[str, Any] | None:
        """meta.yaml, or the last good reading while it is being rewritten."""
        path = os.path.join(self.work_dir, META_FILE)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            problems.append(f"{META_FILE}: cannot read: {exc.strerror or exc}")
            return self._meta
        try:
            meta = _load_yaml(raw)
        except yaml.YAMLError as exc:
            meta, why = None, f"not valid YAML ({str(exc).splitlines()[0]})"
        else:
            why = "empty" if not raw.strip() else "expected a mapping with run_id and status"
        if not (isinstance(meta, dict) and isinstance(meta.get("run_id"), str)
                and "status" in meta):
            if self._meta is not None:
                problems.append(f"{META_FILE}: {why}; being rewritten by end_run? showing "
                                f"what it said before")
            else:
                problems.append(f"{META_FILE}: {why}; still being written?")
            return self._meta
        self._meta = meta
        return meta

    def _read_metrics(self, problems: list[str]) -> dict[str, Latest]:
        found = dict(_walk_files(os.path.join(self.work_dir, METRICS_DIR)))
        self._metrics = {k: m for k, m in self._metrics.items() if k in found}
        latest: dict[str, Latest] = {}
        for key, path in sorted(found.items()):
            metric = self._metrics.setdefault(key, MetricFile(key))
            try:
                metric.update(path)
            except OSError as exc:
                problems.append(f"metrics/{key}: cannot read: {exc.strerror or exc}")
            for problem in metric.problems:
                problems.append(f"metrics/{key}: {problem}")
            if metric.bad_lines > len(metric.problems):
                problems.append(f"metrics/{key}: {metric.bad_lines} malformed lines in all")
            if metric.latest is not None:
                latest[key] = metric.latest
        self._metric_paths = found
        return latest

    def _read_params(self, problems: list[str]) -> dict[str, str]:
        root = os.path.join(self.work_dir, PARAMS_DIR)
        key = (stat_key(root), stat_key(os.path.join(self.work_dir, META_FILE)))
        if key == self._params_key:
            return self._params
        params: dict[str, str] = {}
        for name, path in _walk_files(root):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    params[name] = fh.read()
            except OSError as exc:
                problems.append(f"params/{name}: cannot read: {exc.strerror or exc}")
        self._params, self._params_key = params, key
        return params

    def _experiment_name(self) -> str | None:
        path = os.path.join(os.path.dirname(os.path.abspath(self.work_dir)), META_FILE)
        key = stat_key(path)
        if key is None or key != self._experiment[0]:
            name = None
            try:
                with open(path, "rb") as fh:
                    meta = _load_yaml(fh.read())
                if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                    name = meta["name"]
            except (OSError, yaml.YAMLError):
                pass  # the experiment's name is a nicety; the run reads without it
            self._experiment = (key, name)
        return self._experiment[1]

    def _record_from(self, meta: Mapping[str, Any], problems: list[str]) -> RunRecord:
        raw = meta.get("status")
        word = status_word(raw)
        if word is None:
            problems.append(f"{META_FILE}: status {raw!r}: expected a number 1-5 "
                            f"(RUNNING, SCHEDULED, FINISHED, FAILED, KILLED)")
        start, end = _number(meta.get("start_time")), _number(meta.get("end_time"))
        latest = self._read_metrics(problems)
        params = self._read_params(problems)
        moments = newest_moments(p for m in self._metrics.values() for p in m.recent)
        run_name = meta.get("run_name")
        user = meta.get("user_id")
        stage = meta.get("lifecycle_stage")
        return RunRecord(
            run_id=str(meta["run_id"]),
            store="file",
            status=word,
            raw_status=repr(raw),
            experiment_id=str(meta.get("experiment_id") or ""),
            experiment_name=self._experiment_name(),
            run_name=run_name if isinstance(run_name, str) else None,
            user_id=user if isinstance(user, str) else None,
            lifecycle_stage=stage if isinstance(stage, str) else "active",
            start_ms=start,
            end_ms=end,
            latest=latest,
            params=params,
            recent=moments,
            warnings=tuple(problems),
        )

    def calculate_progress(self) -> ProgressInfo:
        problems: list[str] = []
        meta = self._read_meta(problems)
        if meta is None:
            self._record = None
            return ProgressInfo(runner_type=RUNNER_TYPE, progress_percentage=None,
                                error_message="; ".join(problems))
        record = self._record = self._record_from(meta, problems)
        return with_eta(progress_of(record, self.config), record, self.history_args())
