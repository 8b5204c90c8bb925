"""Cancelling a run whose job is a local process: SIGTERM its process group, SIGKILL later.

The default :func:`progresskit_cancel` for every runner type; it runs last so that a
plugin knowing a better way to stop its system (an HTTP interrupt, a scheduler command)
answers first. It acts only on ``run.process_info``, the process the ``psutil`` plugin
found working in the run's directory, and only on this host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from progresskit.errors import ProgresskitError
from progresskit.model.core import RunStatus
from progresskit.plugin.hookspec import hookimpl

if TYPE_CHECKING:
    # Imported by the functions that cancel: every command loads this plugin, few cancel.
    import signal

    import psutil

log = logging.getLogger(__name__)

#: A process's recorded start time may be rounded; a larger gap means the pid was reused.
_START_TOLERANCE = 1.0
#: How often the grace period checks whether the job is gone: a cancel is not a hot path.
_POLL_SECONDS = 0.05


def _targets(pid: int) -> tuple[int | None, list[psutil.Process]]:
    """The process group to signal (``None``: signal processes one by one) and the
    processes expected to end."""
    import psutil

    proc = psutil.Process(pid)
    members = [proc, *proc.children(recursive=True)]
    try:
        group, session = os.getpgid(pid), os.getsid(pid)
    except ProcessLookupError:
        return None, members
    # A job in our own group (started by us without a session of its own), or one sitting
    # in the group of the shell that leads its session (`sh -c job` without job control):
    # signalling the group would take down the caller or the shell, so only the job and
    # its children are signalled.
    if group == os.getpgrp() or (group == session and group != pid):
        return None, members
    return group, members


def _signal(group: int | None, members: list[psutil.Process], sig: signal.Signals) -> None:
    import psutil

    if group is not None:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass
        else:
            return
    for proc in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _alive(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _still_alive(members: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The members still alive after ``timeout`` seconds.

    Polls instead of psutil.wait_procs, which reaps our own children: when the caller is
    the job's parent (an agent that launched it), its ``Popen.wait()`` must still get the
    exit status, not a 0 for a process already reaped here.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in members if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(_POLL_SECONDS)


def _escalate(
    group: int | None, members: list[psutil.Process], grace: float, what: str
) -> None:
    alive = _still_alive(members, grace)
    if not alive:
        return
    log.warning("%s did not exit within %gs of SIGTERM: sending SIGKILL", what, grace)
    import signal

    _signal(group, alive, signal.SIGKILL)
    _still_alive(alive, 5.0)


@hookimpl(trylast=True)
def progresskit_cancel(run: RunStatus, grace_seconds: float) -> bool | None:
    info = run.process_info
    if info is None:
        return None
    if info.host is not None and info.host != os.uname().nodename:
        return None  # another host's process: not ours to signal
    what = f"process {info.pid} of run {run.work_dir}"
    import signal

    import psutil

    try:
        proc = psutil.Process(info.process_id)
        started = proc.create_time()
    except psutil.NoSuchProcess:
        raise ProgresskitError(f"{what} has already exited") from None
    expected = info.started_at
    if expected is not None and abs(started - expected) > _START_TOLERANCE:
        raise ProgresskitError(
            f"{what}: that pid now belongs to another process (started {started:.0f}, "
            f"expected {expected:.0f}); not signalled"
        )
    try:
        group, members = _targets(info.process_id)
        _signal(group, members, signal.SIGTERM)
    except psutil.NoSuchProcess:
        raise ProgresskitError(f"{what} has already exited") from None
    except (psutil.AccessDenied, PermissionError):
        raise ProgresskitError(f"{what}: permission denied to signal it") from None
    log.info("sent SIGTERM to %s (%s)", what, f"group {group}" if group else "and children")
    # The caller (an HTTP request) must not wait out the grace period.
    threading.Thread(
        target=_escalate,
        args=(group, members, grace_seconds, what),
        name=f"progresskit-cancel-{info.pid}",
        daemon=True,
    ).start()
    return True
