"""Cancelling a run: the one path by which ``progresskit serve`` and ``progresskit cancel``
stop a job (docs/cancel.md).

Which plugin stops it, and how, is the ``progresskit_cancel`` hook's business: a plugin that
knows the run's system (a ComfyUI interrupt, ``scancel``) answers first, the builtin
``local_process`` signals a local process once it is proven to be the run's. What is decided
here is what both callers share: only an active run is cancelled, and every refusal is a
:class:`CancelRefused` whose message says why.
"""

from __future__ import annotations

from progresskit.errors import ProgresskitError
from progresskit.model.core import RunStatus
from progresskit.plugin.manager import PluginManager

__all__ = ["CancelRefused", "cancel_run"]


class CancelRefused(Exception):
    """The run cannot be cancelled (not active, no plugin can stop it, the stop failed or
    was refused because the process could not be proven to be the run's)."""


def cancel_run(pm: PluginManager, run: RunStatus, grace_seconds: float) -> None:
    """Ask the plugins to stop ``run``'s job (blocking: call from a worker thread).

    Returns once the stop was initiated; a local process gets ``grace_seconds`` to exit
    after SIGTERM before it is killed.
    """
    if not run.status.is_active:
        raise CancelRefused(f"run {run.work_dir} is {run.status.value}: nothing to cancel")
    try:
        done = pm.hooks.cancel(run, grace_seconds)
    except ProgresskitError as exc:
        raise CancelRefused(str(exc)) from None
    if done:
        return
    info = run.process_info
    if info is None:
        where = "no process is known for it"
    elif info.host is not None and info.host != _this_host():
        where = f"its process {info.pid} runs on {info.host}, not on this host"
    else:
        where = "none claimed it"
    raise CancelRefused(
        f"no plugin can cancel this {run.progress.runner_type} run ({where}); "
        "a tracker plugin stops its jobs through the progresskit_cancel hook"
    )


def _this_host() -> str:
    from progresskit.formats.lease import this_host

    return this_host()
