"""What Slurm says about a job, parsed from ``squeue --json`` and text ``sacct -P``.

Pure functions over the commands' output (no I/O), checked against real captures of
Slurm 22.05 (tests/data/README.md). The quirks they handle:

* ``squeue --json``'s ``exit_code`` is a wait status (``>> 8`` the exit code, ``& 0x7f``
  the signal); ``sacct --json``'s is wrong for non-signal exits in 22.05, so accounting is
  read as text ``sacct -P`` instead;
* text sacct puts ``0:0`` on the job line of timeouts, cancels and preemptions, and the
  signal on the ``.batch`` step line; it writes ``CANCELLED by <uid>``;
* an array's pending remainder is one record (``16_[2-3]``, ``array_task_string "2-3"``),
  and the array's own id lands on its last task to start;
* a requeued job is one record per attempt in ``sacct -D``: the last is the current one.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "SACCT_FIELDS",
    "Job",
    "SlurmFormatError",
    "expand_output_path",
    "format_minutes",
    "parse_sacct",
    "parse_squeue_json",
]

#: The sacct fields asked for (``-o``); the parser reads columns by the header's names, so
#: a capture made with fewer of them reads too.
SACCT_FIELDS = (
    "JobID", "JobIDRaw", "JobName", "Partition", "State", "ExitCode", "Reason", "Submit",
    "Start", "End", "Timelimit", "ReqMem", "NodeList", "User", "WorkDir", "Cluster",
)

#: squeue's "no limit" time (NO_VAL / INFINITE in 32 bits).
_NO_VAL32 = 0xFFFFFFFE


class SlurmFormatError(ValueError):
    """A command's output is not what Slurm prints: what, where, what was expected."""


@attrs.frozen
class Job:
    """One Slurm job (or array task, or an array's pending remainder), as last reported."""

    #: The job's own id: ``SLURM_JOB_ID``, what ``scancel`` takes (an array task's too).
    job_id: str
    #: How Slurm shows it: ``"17"``, ``"16_0"``, ``"16_[2-3]"``.
    display_id: str
    #: Slurm's own state word: ``RUNNING``, ``OUT_OF_MEMORY``, ``CANCELLED``, ...
    state: str
    #: Slurm's reason (``Resources``, ``TimeLimit``, ...); ``None`` for "None".
    reason: str | None = None
    name: str = ""
    user: str | None = None
    partition: str | None = None
    cluster: str | None = None
    array_job_id: str | None = None
    #: ``"0"`` for a task, ``"2-3"`` for an array's pending remainder.
    array_task_id: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    #: How many times it was requeued: ``restart_cnt``, or earlier attempts in ``sacct -D``.
    restarts: int = 0
    #: The state that ended the previous attempt of a requeued job (``NODE_FAIL``).
    previous_state: str | None = None
    #: ``HH:MM:SS`` (``D-HH:MM:SS``), or ``None`` when unlimited or not said.
    time_limit: str | None = None
    #: ``50M``, ``2G``, ``500M per CPU``.
    mem_limit: str | None = None
    #: The uid that cancelled it (text sacct's ``CANCELLED by 0``).
    cancelled_by: str | None = None
    work_dir: str | None = None
    #: The output file, patterns expanded (``%j``, ``%A_%a``, ``%x``, ...).
    stdout: str | None = None
    submit_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    node: str | None = None
    #: Which command said it: ``squeue`` or ``sacct``.
    source: str = "squeue"

    @property
    def is_array_remainder(self) -> bool:
        """Whether this is an array's not-yet-started tasks (``16_[2-3]``)."""
        return self.array_task_id is not None and not self.array_task_id.isdigit()

    @property
    def array_size(self) -> int:
        """How many tasks this record stands for (an array remainder ``2-3,5``: 3)."""
        task = self.array_task_id
        if task is None or task.isdigit():
            return 1
        count = 0
        for part in task.split("%")[0].split(","):
            low, _, rest = part.partition("-")
            high, _, step = rest.partition(":")
            if low.isdigit() and (not high or high.isdigit()):
                count += len(range(int(low), int(high or low) + 1, int(step or 1)))
        return max(count, 1)


# -- squeue --json --------------------------------------------------------------------------


def format_minutes(minutes: int) -> str:
    """Slurm's ``[D-]HH:MM:SS`` for a limit in minutes (squeue's ``time_limit``)."""
    days, rest = divmod(minutes, 24 * 60)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


def _mem(per_node: Any, per_cpu: Any) -> str | None:
    def size(mb: int) -> str:
        return f"{mb // 1024}G" if mb >= 1024 and mb % 1024 == 0 else f"{mb}M"

    if isinstance(per_node, int) and 0 < per_node < _NO_VAL32:
        return size(per_node)
    if isinstance(per_cpu, int) and 0 < per_cpu < _NO_VAL32:
        return f"{size(per_cpu)} per CPU"
    return None


_PATTERN = re.compile(r"%(\d*)([%AaJjNnstux])")


def expand_output_path(pattern: str, job: Mapping[str, str]) -> str:
    """An sbatch ``--output`` pattern with the job's values (sbatch's "filename pattern").

    ``job``: ``job_id``, ``array_job_id``, ``array_task_id``, ``name``, ``user``, ``node``.
    """

    def one(m: re.Match[str]) -> str:
        width, letter = m.group(1), m.group(2)
        if letter == "%":
            return "%"
        value = {
            "A": job.get("array_job_id") or job["job_id"],
            "a": job.get("array_task_id") or "4294967294",
            "J": job["job_id"],
            "j": job["job_id"],
            "N": job.get("node") or "",
            "n": "0",
            "s": "batch",
            "t": "0",
            "u": job.get("user") or "",
            "x": job.get("name") or "",
        }[letter]
        return value.zfill(int(width)) if width and value.isdigit() else value

    return _PATTERN.sub(one, pattern)


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int) and 0 < value < _NO_VAL32 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "None" else None


def _squeue_job(rec: Mapping[str, Any], where: str) -> Job:
    try:
        job_id = str(int(rec["job_id"]))
        state = rec["job_state"]
    except (KeyError, TypeError, ValueError) as exc:
        raise SlurmFormatError(
            f"{where}: a job record without a numeric 'job_id' and a 'job_state' ({exc!r})"
        ) from None
    if not isinstance(state, str) or not state:
        raise SlurmFormatError(f"{where}: job {job_id}: 'job_state' is {state!r}, not a word")
    array_job = rec.get("array_job_id")
    array_job_id = str(array_job) if isinstance(array_job, int) and array_job > 0 else None
    task = rec.get("array_task_id")
    task_id: str | None = str(task) if isinstance(task, int) and task < _NO_VAL32 else None
    if array_job_id is not None and task_id is None:
        task_id = _text(rec.get("array_task_string"))
    display = job_id
    if array_job_id is not None and task_id is not None:
        task = task_id if task_id.isdigit() else f"[{task_id}]"
        display = f"{array_job_id}_{task}"
    status = rec.get("exit_code")
    exit_code = signal = None
    if isinstance(status, int) and 0 <= status < _NO_VAL32:
        exit_code, signal = (status >> 8) & 0xFF, status & 0x7F
    limit = rec.get("time_limit")
    name = rec.get("name") if isinstance(rec.get("name"), str) else ""
    node = _text(rec.get("batch_host")) or _text(rec.get("nodes"))
    work_dir = _text(rec.get("current_working_directory"))
    user = _text(rec.get("user_name"))
    pending = state == "PENDING"
    return Job(
        job_id=job_id,
        display_id=display,
        state=state,
        reason=_text(rec.get("state_reason")),
        name=name or "",
        user=user,
        partition=_text(rec.get("partition")),
        cluster=_text(rec.get("cluster")),
        array_job_id=array_job_id,
        array_task_id=task_id,
        exit_code=exit_code,
        signal=signal,
        restarts=rec["restart_cnt"] if isinstance(rec.get("restart_cnt"), int) else 0,
        time_limit=format_minutes(limit) if isinstance(limit, int) and limit < _NO_VAL32 else None,
        mem_limit=_mem(rec.get("memory_per_node"), rec.get("memory_per_cpu")),
        work_dir=work_dir,
        stdout=_stdout(rec, job_id, array_job_id, task_id, name or "", user, node, work_dir),
        submit_time=_time(rec.get("submit_time")),
        # A pending job's start_time is the scheduler's forecast, not a start.
        start_time=None if pending else _time(rec.get("start_time")),
        end_time=None if pending or state in _ACTIVE else _time(rec.get("end_time")),
        node=node,
        source="squeue",
    )


#: States whose end_time is the limit's forecast, not an end.
_ACTIVE = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT",
                     "SIGNALING", "RESIZING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


def _stdout(rec: Mapping[str, Any], job_id: str, array_job_id: str | None,
            task_id: str | None, name: str, user: str | None, node: str | None,
            work_dir: str | None) -> str | None:
    if rec.get("batch_flag") is False:
        return None  # srun/salloc: the output is the caller's terminal
    pattern = _text(rec.get("standard_output"))
    if pattern is None:  # sbatch's default
        pattern = "slurm-%A_%a.out" if array_job_id else "slurm-%j.out"
    values = {"job_id": job_id, "array_job_id": array_job_id or "",
              "array_task_id": task_id if task_id and task_id.isdigit() else "",
              "name": name, "user": user or "", "node": node or ""}
    path = expand_output_path(pattern, values)
    if not path.startswith("/") and work_dir:
        path = f"{work_dir.rstrip('/')}/{path}"
    return path


def parse_squeue_json(text: str | bytes, where: str = "squeue --json") -> list[Job]:
    """Every job record of ``squeue --json`` (openapi v0.0.38 and later)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        head = (text[:80] if isinstance(text, str) else text[:80].decode("utf-8", "replace"))
        raise SlurmFormatError(f"{where}: not JSON ({exc}); it began {head!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise SlurmFormatError(f"{where}: expected an object with a 'jobs' list")
    errors = doc.get("errors") or []
    if errors:
        raise SlurmFormatError(f"{where}: Slurm reports errors: {errors}")
    return [_squeue_job(rec, where) for rec in doc["jobs"] if isinstance(rec, dict)]


# -- sacct -P -------------------------------------------------------------------------------


def _sacct_time(value: str) -> float | None:
    if not value or value in ("Unknown", "None"):
        return None
    try:  # sacct prints the controller's local time, without a zone
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _exit(value: str) -> tuple[int | None, int | None]:
    code, _, sig = value.partition(":")
    if not code.isdigit() or not sig.isdigit():
        return None, None
    return int(code), int(sig)


def _records(text: str, where: str) -> Iterator[dict[str, str]]:
    header: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("$ "):  # a capture's command line
            continue
        cells = line.split("|")
        if header is None:
            if "JobID" not in cells or "State" not in cells:
                raise SlurmFormatError(
                    f"{where}: line {number}: expected sacct -P's header naming JobID and "
                    f"State, got {line[:80]!r}"
                )
            header = cells
            continue
        if len(cells) != len(header):
            raise SlurmFormatError(
                f"{where}: line {number}: {len(cells)} fields, the header has {len(header)}"
            )
        yield dict(zip(header, cells, strict=True))
    if header is None and text.strip():
        raise SlurmFormatError(f"{where}: no sacct -P header line")


_DISPLAY = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]+\]))?$")


def parse_sacct(text: str, where: str = "sacct -P") -> list[Job]:
    """Every job of text ``sacct -P [-D]`` (steps folded into their job); for a job listed
    once per attempt (``-D``), the last attempt, with the earlier ones counted."""
    jobs: dict[str, Job] = {}
    order: list[str] = []
    last: str | None = None
    for rec in _records(text, where):
        job_field = rec["JobID"]
        base, dot, step = job_field.partition(".")
        if dot:  # a step: its signal is the one a timeout or cancel shows
            if last is not None and base == jobs[last].display_id and step == "batch":
                job = jobs[last]
                code, sig = _exit(rec.get("ExitCode", ""))
                if sig and not job.signal:
                    jobs[last] = attrs.evolve(job, signal=sig)
            continue
        m = _DISPLAY.match(job_field)
        if m is None:
            raise SlurmFormatError(f"{where}: JobID {job_field!r} is not a Slurm job id")
        raw = rec.get("JobIDRaw") or ""
        array_job_id = task = None
        if m.group(2) is not None:
            array_job_id, task = m.group(1), m.group(2).strip("[]")
        if task is not None and task.isdigit():
            # An array task's own id is only in JobIDRaw; without it, its display id.
            job_id = raw if raw.isdigit() else job_field
        else:
            job_id = m.group(1)
        words = rec["State"].split()
        state = words[0] if words else ""
        if not state:
            raise SlurmFormatError(f"{where}: job {job_field}: empty State")
        cancelled_by = words[2] if len(words) == 3 and words[1] == "by" else None
        code, sig = _exit(rec.get("ExitCode", ""))
        nodes = rec.get("NodeList", "")
        job = Job(
            job_id=job_id,
            display_id=job_field,
            state=state,
            reason=_text(rec.get("Reason")),
            name=rec.get("JobName", ""),
            user=_text(rec.get("User")),
            partition=_text(rec.get("Partition")),
            cluster=_text(rec.get("Cluster")),
            array_job_id=array_job_id,
            array_task_id=task,
            exit_code=code,
            signal=sig or None,
            time_limit=_text(rec.get("Timelimit")) if rec.get("Timelimit") not in (
                "UNLIMITED", "Partition_Limit") else None,
            mem_limit=_text(rec.get("ReqMem")),
            cancelled_by=cancelled_by,
            work_dir=_text(rec.get("WorkDir")),
            submit_time=_sacct_time(rec.get("Submit", "")),
            start_time=_sacct_time(rec.get("Start", "")),
            end_time=_sacct_time(rec.get("End", "")),
            node=None if nodes in ("", "None assigned") else nodes,
            source="sacct",
        )
        earlier = jobs.get(job_field)
        if earlier is None:
            order.append(job_field)
        else:  # -D: an earlier attempt of a requeued job
            job = attrs.evolve(job, restarts=earlier.restarts + 1, previous_state=earlier.state)
        jobs[job_field] = job
        last = job_field
    return [jobs[k] for k in order]
