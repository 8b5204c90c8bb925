"""Local process discovery with psutil: which processes work on which run.

A process works on a run when its working directory is the run's work dir (or below it),
or one of its command-line arguments names the work dir or a path inside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import psutil

from progresskit.model.core import ProcessInfo
from progresskit.plugin.hookspec import hookimpl

_MAX_PARENTS = 12
#: Programs that sit in or look at a run without working on it: a shell whose cwd is the
#: run, a `tail -f` of its log. Counting them would turn a dead run into a "stuck" one.
_ONLOOKERS = frozenset(
    {
        "bash",
        "sh",
        "zsh",
        "fish",
        "dash",
        "ksh",
        "tmux",
        "screen",
        "tail",
        "less",
        "more",
        "vi",
        "vim",
        "nvim",
        "nano",
        "emacs",
        "watch",
        "progresskit",
        "ls",
        "du",
        "find",
    }
)


def _owner(path: str, dirs: Mapping[str, str]) -> str | None:
    """The run (as given) that ``path`` is, or is inside of."""
    current = path
    for _ in range(_MAX_PARENTS):
        if current in dirs:
            return dirs[current]
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return None


@hookimpl
def progresskit_process_info(work_dirs: Sequence[str]) -> dict[str, ProcessInfo]:
    dirs = {os.path.abspath(d): d for d in work_dirs}
    found: dict[str, ProcessInfo] = {}
    me = os.getpid()
    attrs = ["pid", "name", "username", "cmdline", "create_time", "cwd"]
    for proc in psutil.process_iter(attrs):
        info = proc.info
        if info["pid"] == me or not info["cmdline"] or info["name"] in _ONLOOKERS:
            continue
        cwd = info["cwd"] or "/"
        args = [os.path.abspath(os.path.join(cwd, a)) for a in info["cmdline"][1:] if "/" in a]
        # The cwd counts only when it is the run itself, not somewhere inside it.
        for run in [dirs.get(cwd)] + [_owner(a, dirs) for a in args]:
            if run is not None and run not in found:
                found[run] = ProcessInfo(
                    pid=info["pid"],
                    user=info["username"],
                    cmd=" ".join(info["cmdline"]),
                    start_time=info["create_time"],
                    host=os.uname().nodename,
                )
                break
    return found
