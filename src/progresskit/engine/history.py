"""The ETA history: finished runs' pace, per runner type and group, in a local SQLite file.

Where: ``$PROGRESSKIT_HISTORY`` if set (it overrides the config), else the ``eta_history``
config key, else ``$XDG_STATE_HOME/progresskit/history.sqlite3`` (``~/.local/state/...``).
The value ``off`` disables history. The database is in WAL mode, so readers never block
the writer and several processes (a CLI, a watcher, a service) can record at once; each
write is one short ``BEGIN IMMEDIATE`` transaction with a busy timeout.

Nothing here writes unless asked: :func:`estimate_run` with ``finished=True`` hands the
finished run's :class:`RunRecord` to the innermost :func:`record_finished_runs` block, which
commits what it collected in one transaction when it ends; outside any block the record is
dropped. The engine's recording sessions (the CLI's, :class:`~progresskit.engine.monitor.Monitor`'s)
open one per query; library queries open none, so they never write. A run is keyed by
(runner type, real path of the work dir, time of its first observation): ``INSERT OR
IGNORE`` makes every later record of the same finished run a no-op, and a new run in the
same directory (a re-run) is a new row.

History never breaks a status query: a store that cannot be opened, created or written
(a read-only home, a full disk, a corrupt file) is reported once per file and process as a
warning on the ``progresskit.engine.history`` logger, and the ETA is computed without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from progresskit.engine.eta import (
    PROFILE_BINS,
    Basis,
    Estimate,
    Prior,
    estimate,
    from_source,
    rate_profile,
)

if TYPE_CHECKING:
    # Loaded where a database is opened: a query with no history file yet (a first run, or
    # history off) never needs it.
    import sqlite3

__all__ = [
    "HISTORY_ENV",
    "IGNORED_WORKLOAD_KEYS",
    "HistoryStore",
    "RunRecord",
    "estimate_run",
    "group_name",
    "history_path",
    "record_finished_runs",
    "store_for",
    "workload_digest",
]

log = logging.getLogger("progresskit.engine.history")

#: Environment variable naming the history database; it overrides the config key.
HISTORY_ENV = "PROGRESSKIT_HISTORY"
#: The value (of the variable or the key) that turns history off.
OFF = "off"
#: Newest finished runs per group that form a prior: recent runs reflect today's hardware
#: and code; 50 is plenty for a median and keeps the query and its parsing sub-millisecond.
PRIOR_RUNS = 50
#: Seconds a writer waits for another process's transaction: writes take milliseconds, so
#: this only runs out when the file is wedged (then the run is recorded on a later query).
BUSY_TIMEOUT = 10.0
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    runner_type TEXT NOT NULL,
    grp TEXT NOT NULL,
    run_key TEXT NOT NULL,
    finished_at REAL NOT NULL,
    recorded_at REAL NOT NULL,
    duration_seconds REAL NOT NULL,
    units REAL NOT NULL,
    seconds_per_unit REAL NOT NULL,
    profile TEXT NOT NULL,
    PRIMARY KEY (runner_type, run_key)
);
CREATE INDEX IF NOT EXISTS runs_by_group ON runs (runner_type, grp, finished_at);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def default_path() -> Path:
    """``$XDG_STATE_HOME/progresskit/history.sqlite3``, ``~/.local/state`` when unset."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(state) / "progresskit" / "history.sqlite3"


def history_path(config: Mapping[str, Any] | None = None) -> Path | None:
    """The history database in force, or ``None`` when history is off."""
    value = os.environ.get(HISTORY_ENV) or (config or {}).get("eta_history")
    if value is None or value == "":
        return default_path()
    if str(value).strip().lower() == OFF:
        return None
    return Path(os.path.expanduser(str(value)))


@attrs.frozen
class RunRecord:
    """One finished run as the history keeps it."""

    runner_type: str
    group: str
    run_key: str
    finished_at: float
    duration_seconds: float
    units: float
    seconds_per_unit: float
    #: Seconds per unit in each slice of progress (see :func:`progresskit.engine.eta.rate_profile`).
    profile: tuple[float | None, ...]


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises; evaluated only once an exception is being matched."""
    import sqlite3

    return (sqlite3.Error, OSError)


def _warn_once(path: Path, what: str, exc: BaseException) -> None:
    key = (str(path), what)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(
        "ETA history %s: cannot %s (%s); ETAs use this run's own rate only", path, what, exc
    )


class HistoryStore:
    """One history database. Safe to share between threads; processes share the file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()
        self._ready = False
        #: (runner type, group, units) -> (data_version, prior): a prior is re-read only
        #: after a commit changed the database (another connection's moves data_version;
        #: ours clears the cache).
        self._priors: dict[tuple[str, str, float | None], tuple[int, Prior | None]] = {}
        self._lock = threading.Lock()

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            if create and not self._ready:
                self._init(conn)
            return conn
        if not create and not self.path.exists():
            return None
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        import sqlite3

        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        self._local.conn = conn
        if create:
            self._init(conn)
        return conn

    def _init(self, conn: sqlite3.Connection) -> None:
        # WAL is a property of the file, set once; NORMAL sync is durable in WAL mode except
        # for the last commits on power loss, which costs a history row, not consistency.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                import sqlite3

                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this progresskit ({SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._ready = True

    def exists(self) -> bool:
        """Whether there is a history to read: a connection is open, or the file exists."""
        return getattr(self._local, "conn", None) is not None or self.path.exists()

    def record_many(self, records: Sequence[RunRecord]) -> int:
        """Add finished runs in one transaction; how many were new (0 when the store failed)."""
        now = time.time()
        rows = [
            (
                r.runner_type,
                r.group,
                r.run_key,
                r.finished_at,
                now,
                r.duration_seconds,
                r.units,
                r.seconds_per_unit,
                json.dumps(list(r.profile)),
            )
            for r in records
        ]
        try:
            conn = self._connect(create=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO runs (runner_type, grp, run_key, finished_at,"
                    " recorded_at, duration_seconds, units, seconds_per_unit, profile)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if added:
                # data_version moves only for other connections' commits: our own would
                # leave a cached prior stale.
                with self._lock:
                    self._priors.clear()
            return added
        except _store_errors() as exc:
            _warn_once(self.path, "record a finished run", exc)
            return 0

    def runs(
        self,
        runner_type: str,
        group: str,
        limit: int = PRIOR_RUNS,
        *,
        units: float | None = None,
    ) -> list[RunRecord]:
        """The newest ``limit`` finished runs of a group (newest first); with ``units``, only
        those whose total was that many units (the runs comparable with one of that total)."""
        conn = self._connect(create=False)
        if conn is None:
            return []
        where = "runner_type = ? AND grp = ?" + ("" if units is None else " AND units = ?")
        args: tuple[object, ...] = (runner_type, group)
        if units is not None:
            args += (float(units),)
        rows = conn.execute(
            "SELECT runner_type, grp, run_key, finished_at, duration_seconds, units,"
            f" seconds_per_unit, profile FROM runs WHERE {where}"
            " ORDER BY finished_at DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        records = []
        for row in rows:
            profile = _profile(row[7])
            if profile is not None:
                records.append(
                    RunRecord(
                        runner_type=row[0],
                        group=row[1],
                        run_key=row[2],
                        finished_at=row[3],
                        duration_seconds=row[4],
                        units=row[5],
                        seconds_per_unit=row[6],
                        profile=profile,
                    )
                )
        return records

    def prior(self, runner_type: str, group: str, units: float | None = None) -> Prior | None:
        """History's prior for a group (with ``units``: its runs of that total only), or
        ``None`` (no runs, or the store is unreadable)."""
        try:
            conn = self._connect(create=False)
            if conn is None:
                return None
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            key = (runner_type, group, units)
            with self._lock:
                known = self._priors.get(key)
            if known is not None and known[0] == version:
                return known[1]
            records = self.runs(runner_type, group, units=units)
            prior = Prior(tuple(r.profile for r in records)) if records else None
            with self._lock:
                self._priors[key] = (version, prior)
            return prior
        except _store_errors() as exc:
            _warn_once(self.path, "read history", exc)
            return None


def _profile(text: str) -> tuple[float | None, ...] | None:
    """A stored profile, or None when the row is not one this version understands."""
    try:
        values = json.loads(text)
    except ValueError:
        return None
    if not isinstance(values, list) or len(values) != PROFILE_BINS:
        return None
    out: list[float | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, int | float) and math.isfinite(v) and v > 0:
            out.append(float(v))
        else:
            return None
    return tuple(out)


_stores: dict[Path, HistoryStore] = {}
_stores_lock = threading.Lock()


#: The records collected by the innermost :func:`record_finished_runs` block, if one is open.
_pending: contextvars.ContextVar[list[tuple[HistoryStore, RunRecord]] | None] = (
    contextvars.ContextVar("progresskit_history_pending", default=None)
)


@contextlib.contextmanager
def record_finished_runs() -> Iterator[None]:
    """Record into the ETA history the finished runs that :func:`estimate_run` meets inside.

    They are committed when the block ends, in one transaction per history database: a
    scan of thousands of finished runs pays one commit, not one per run (about 65 us each).
    A block nested in another commits its own records when it ends, so a long-running
    monitor never holds records back for an enclosing block. Runs recorded in a block are
    not yet a prior for the runs met in the same block. The block belongs to the current
    context (:mod:`contextvars`): work handed to another thread is covered only when it
    runs in a copy of this context. Committing never raises (see :class:`HistoryStore`).
    """
    pending: list[tuple[HistoryStore, RunRecord]] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
        by_store: dict[Path, tuple[HistoryStore, list[RunRecord]]] = {}
        for store, record in pending:
            by_store.setdefault(store.path, (store, []))[1].append(record)
        for store, records in by_store.values():
            store.record_many(records)


def store_for(config: Mapping[str, Any] | None = None) -> HistoryStore | None:
    """The (shared, per process) store in force for ``config``; ``None`` when off."""
    path = history_path(config)
    if path is None:
        return None
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = HistoryStore(path)
        return store


#: Keys of a run's configuration that do not change its work, at any depth (compared in
#: lower case): names, output locations, and optimiser values that change what is learnt,
#: not the cost of a step. Any key ending in ``_seed`` or starting with ``seed_`` is a seed
#: too. Paths of inputs (``data_dir``, ``dataset_path``) stay: they name the data.
IGNORED_WORKLOAD_KEYS = frozenset({
    # seeds
    "seed", "random_seed",
    # names of the run (not "name": a model's or a dataset's name is their identity)
    "run_name", "experiment_name", "run_id", "tags", "notes", "comment",
    # where outputs go
    "output_dir", "out_dir", "outdir", "save_dir", "save_path", "log_dir", "logging_dir",
    "logdir", "work_dir", "checkpoint_dir", "ckpt_dir", "export_path", "output_path",
    "resume_from_checkpoint",
    # what is learnt, not what a step costs
    "lr", "learning_rate", "weight_decay", "momentum", "betas", "eps", "adam_epsilon",
    "adam_beta1", "adam_beta2",
})
#: Hex digits of the workload digest kept in the group: 48 bits, no collision among the
#: workloads one history holds.
WORKLOAD_DIGEST_CHARS = 12


def _ignored(key: str) -> bool:
    low = key.lower()
    return low in IGNORED_WORKLOAD_KEYS or low.endswith("_seed") or low.startswith("seed_")


#: Levels of a configuration digested; deeper values are left out. Real configs nest a
#: handful of levels; a file nested hundreds deep (anyone may write a run's config.json)
#: must not exhaust the stack of the status query that reads it.
MAX_WORKLOAD_DEPTH = 32


def _work_only(value: Any, depth: int = 0) -> Any:
    """``value`` without the keys that do not change the work, with keys as strings (a YAML
    mapping may have numbers for keys), ready for canonical JSON."""
    if depth >= MAX_WORKLOAD_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {
            str(k): _work_only(v, depth + 1) for k, v in value.items() if not _ignored(str(k))
        }
    if isinstance(value, list | tuple):
        return [_work_only(v, depth + 1) for v in value]
    return value


def workload_digest(workload: Mapping[str, Any]) -> str | None:
    """A stable digest of what defines a run's work: ``workload`` without
    :data:`IGNORED_WORKLOAD_KEYS` (at any depth; below :data:`MAX_WORKLOAD_DEPTH` levels,
    nothing), as canonical JSON (sorted keys), SHA-256,
    the first :data:`WORKLOAD_DIGEST_CHARS` hex digits. The same on every host and in every
    process; the order of keys does not matter. ``None`` when nothing is left."""
    import hashlib  # loaded by the queries that use the history only

    work = _work_only(workload)
    if not work:
        return None
    text = json.dumps(work, sort_keys=True, separators=(",", ":"), default=repr)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:WORKLOAD_DIGEST_CHARS]


def group_name(name: str, workload: Mapping[str, Any] | None) -> str:
    """The history's group (its ``grp`` column) for a group ``name`` and a workload:
    ``name#digest``, or ``name`` alone without a workload (what every group was before
    workloads were keyed, so those rows still read as the runs of unknown work)."""
    digest = None if not workload else workload_digest(workload)
    return name if digest is None else f"{name}#{digest}"


def estimate_run(
    observations: Iterable[tuple[float, float]],
    total: float | None,
    *,
    runner_type: str,
    work_dir: str,
    config: Mapping[str, Any] | None = None,
    group: str | None = None,
    workload: Mapping[str, Any] | None = None,
    finished: bool = False,
    run_id: str | None = None,
    source_eta: float | None = None,
) -> Estimate:
    """The ETA of a run, for trackers, with the history of finished runs of its kind as prior.

    Never writes: a finished run's record goes to the enclosing :func:`record_finished_runs`
    block, if there is one (the engine opens one around the queries of a session that
    records), and is dropped otherwise. Trackers pass the three arguments that name the
    run in the history with ``**self.history_args()``
    (:meth:`~progresskit.plugin.tracker.BaseProgressTracker.history_args`).

    :param observations: ``(unix time, units done)`` in time order (epoch ends, step counts,
        finished items; any unit ``total`` counts in).
    :param total: the units of the whole run, or ``None`` when unknown.
    :param runner_type: the tracker's runner type (history is kept per runner type).
    :param work_dir: the run's directory (identifies the run in the history).
    :param config: the run's config: ``eta_history`` and ``eta_group`` are read from it.
    :param group: the tracker's default group when the config sets no ``eta_group`` (the
        config name, a ComfyUI job type...).
    :param workload: the values of the run's own configuration that define its work (a
        trainer's ``config.json``: model, dataset, batch size...); their
        :func:`workload_digest` joins ``group`` in the history's key, so only runs of the
        same work are compared. Ignored when the config sets ``eta_group``.
    :param finished: the run completed (or stopped early, done): its ETA is 0 and, inside
        :func:`record_finished_runs`, it is recorded into the history (once per run, however
        often it is reported).
    :param run_id: what identifies the run when a directory does not (a ComfyUI prompt id
        with its server); default: the real path of ``work_dir``.
    :param source_eta: the source's own remaining seconds (``source_eta_seconds``), if it
        gives one: the answer (basis ``source``) while ours has no measurement of this run's
        own pace (unknown, or history only).
    """
    points = list(observations)
    store = store_for(config)
    pinned = (config or {}).get("eta_group")
    name = str(pinned or group or "")
    # Digested only when the history is used: a query with no history file never loads
    # hashlib (tests/test_startup_imports.py).
    work = None if pinned else workload
    if finished:
        pending = _pending.get()
        if pending is not None and store is not None:
            record = finished_record(
                points, total, runner_type, group_name(name, work), work_dir, run_id
            )
            if record is not None:
                pending.append((store, record))
        return Estimate(0.0, 0.0, 0.0, Basis.DONE, "complete")
    # Comparable runs are those of the same kind (runner type, group and workload) *and*
    # the same total: a 30k-iteration run is not paced like a 1k one (their warm-up,
    # evaluation and export shares differ), and mixing them let short runs' history
    # override a long run's own pace (issue 15).
    prior = None
    if store is not None and total and store.exists():
        keyed = group_name(name, work)
        prior = store.prior(runner_type, keyed, float(total))
        if prior is None and keyed != name:
            # Runs recorded without a workload (before it was keyed, or by a tracker that
            # knows none) are of unknown work: a prior still, which the run's own pace
            # overrides, and ignores when it is off by more than CONFLICT_RATIO.
            prior = store.prior(runner_type, name, float(total))
    ours = estimate(points, total, prior)
    if source_eta is None or not (math.isfinite(source_eta) and source_eta > 0):
        return ours
    if ours.basis in (Basis.UNKNOWN, Basis.HISTORY):
        # Ours has too little of the run's own evidence: the source, which sees the run from
        # inside, says better; its band is the spread of a single run (SINGLE_RUN_SPREAD).
        return from_source(source_eta)
    return ours


def finished_record(
    points: Sequence[tuple[float, float]],
    total: float | None,
    runner_type: str,
    group: str,
    work_dir: str,
    run_id: str | None = None,
) -> RunRecord | None:
    """What the history keeps of a finished run, or ``None`` if its pace was not observed."""
    clean = [(float(t), float(u)) for t, u in points if math.isfinite(t) and math.isfinite(u)]
    if len(clean) < 2:
        return None
    (t0, u0), (t1, u1) = clean[0], clean[-1]
    if t1 <= t0 or u1 <= u0:
        return None
    # Early-stopped runs end before their total: their pace still describes the group.
    units = float(total) if total and total >= u1 else u1
    profile = rate_profile(clean, units)
    if all(v is None for v in profile):
        return None
    return RunRecord(
        runner_type=runner_type,
        group=group,
        run_key=f"{run_id or os.path.realpath(work_dir)}@{t0:.3f}",
        finished_at=t1,
        duration_seconds=t1 - t0,
        units=units,
        seconds_per_unit=(t1 - t0) / (u1 - u0),
        profile=tuple(profile),
    )
