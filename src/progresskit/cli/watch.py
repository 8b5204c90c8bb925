"""Watch the runs under ROOT (new ones included) until Ctrl-C or SIGTERM: a full-screen
view on a terminal, JSON lines otherwise (docs/watch.md).

``progresskit watch ROOT`` is a :class:`~progresskit.engine.monitor.Monitor` on the command
line. On a terminal (standard input and output) it shows a full-screen table that scrolls,
sorts, filters and opens a run's page (:mod:`progresskit.cli.tui`); otherwise, or with
``--json``, it writes one JSON line per change. SIGINT and
SIGTERM stop it cleanly: the sinks are closed (the webhook delivers what it can within its
``flush_timeout``) and the exit code is 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from rich.console import Console

from progresskit.builtin.table import escape_text
from progresskit.cli.options import (
    EXIT_OK,
    Override,
    add_overrides,
    add_view_arguments,
    overrides,
)
from progresskit.engine.monitor import Monitor
from progresskit.formats import jsonio
from progresskit.formats.change import Change, change_document
from progresskit.plugin.coreconfig import WATCH_MODES
from progresskit.plugin.manager import PluginManager

__all__ = ["OVERRIDES", "add_watch_arguments", "run_watch"]

OVERRIDES = (
    Override(
        "--mode",
        "watch_mode",
        "how file changes are noticed",
        parse=str,
        choices=WATCH_MODES,
    ),
    Override("--poll-interval", "watch_poll_interval", "seconds between full re-evaluations"),
    Override(
        "--heartbeat",
        "watch_heartbeat",
        "seconds between heartbeats restating every run; 0: none",
    ),
)

def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``progresskit watch``."""
    parser.add_argument("root", metavar="ROOT", help="a run or a directory of runs to watch")
    parser.add_argument(
        "--json", action="store_true", help="JSON lines even on a terminal (docs/watch.md)"
    )
    # The screen's filter and order at start-up (the s and f keys change them).
    add_view_arguments(parser, limit=False)
    add_overrides(parser, OVERRIDES)


def run_watch(pm: PluginManager, args: argparse.Namespace) -> int:
    """Watch ``args.root`` until SIGINT or SIGTERM; returns the exit code."""
    monitor = Monitor(
        args.root,
        config_path=args.config,
        pm=pm,
        overrides=overrides(pm, args, OVERRIDES),
        options=args,
    )
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    err = Console(stderr=True, highlight=False)
    err.print(
        f"progresskit: watching {escape_text(monitor.root)} ({monitor.mode} mode, config: "
        f"{escape_text(monitor.config_origin)}, {len(monitor.sinks)} sink(s)); Ctrl-C stops",
        soft_wrap=True,
        markup=False,  # a directory named "x[/]y" is a name, not markup
    )
    losses = threading.Thread(target=_report_losses, args=(monitor, err, done), daemon=True)
    losses.start()
    try:
        if not args.json and sys.stdout.isatty() and sys.stdin.isatty():
            _screen(monitor, pm, args, done, err)
        else:
            _json_lines(monitor, done)
    finally:
        done.set()
        losses.join(5)
        monitor.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def _json_lines(monitor: Monitor, done: threading.Event) -> None:
    def write(change: Change) -> None:
        try:
            sys.stdout.write(jsonio.dumps(change_document(change)) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away (`| head`): nobody left to tell
            # Point stdout at /dev/null so the interpreter's final flush does not fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            done.set()

    monitor.subscribe(write)
    monitor.start()
    while not done.wait(0.25):
        pass


def _screen(
    monitor: Monitor,
    pm: PluginManager,
    args: argparse.Namespace,
    done: threading.Event,
    err: Console,
) -> None:
    """The full-screen view (progresskit.cli.tui), or JSON lines without Textual."""
    import importlib.util

    if importlib.util.find_spec("textual") is None:
        err.print(
            "progresskit: the full-screen view needs Textual: pip install 'progresskit[tui]'; "
            "writing JSON lines",
            markup=False,
            soft_wrap=True,
        )
        _json_lines(monitor, done)
        return
    from progresskit.cli.cancel import DEFAULT_GRACE
    from progresskit.cli.tui.app import run_screen
    from progresskit.cli.tui.view import ViewState, default_filters

    state = ViewState(
        monitor.root,
        sort=args.sort or "urgency",
        filters=default_filters(args.status, args.active),
    )
    # What was logged while the screen was up is said again once it is gone.
    for line in run_screen(monitor, pm, state, done, DEFAULT_GRACE):
        err.print(f"progresskit: {line}", markup=False, soft_wrap=True)


def _report_losses(monitor: Monitor, err: Console, done: threading.Event) -> None:
    """Say on stderr, once a second at most, what a sink lost since it was last said
    (a full disk under a webhook's spool: docs/watch.md), and once more at the end."""
    from progresskit.builtin.droprecord import describe_losses

    said: dict[int, int] = {}
    while True:
        finished = done.wait(1.0)
        for index, sink in enumerate(monitor.sinks):
            drops = getattr(sink, "drops", None)
            record = drops.snapshot() if drops is not None else None
            if record and record["count"] > said.get(index, 0):
                said[index] = record["count"]
                where = f"sink {getattr(sink, 'url', type(sink).__name__)}"
                line = f"progresskit: {describe_losses(where, record)}"
                err.print(line, markup=False, soft_wrap=True)
        if finished:
            return
