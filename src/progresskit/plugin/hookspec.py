"""The plugin API: every hook a progresskit plugin may implement.

A plugin is a module (or object) with functions named ``progresskit_<hook>``. progresskit's
own plugins (the trackers, sinks, process source and cancel) are registered in code; a third
party's plugin is registered through the ``progresskit`` entry-point group of its
distribution::

    [project.entry-points.progresskit]
    mytracker = "mypackage.progresskit_plugin"

Mark implementations with :data:`progresskit.hookimpl` (``@hookimpl``) to pass pluggy
options such as ``tryfirst``; unmarked functions whose name starts with ``progresskit_`` are
taken as implementations too, so a misspelt hook name is reported instead of ignored.

**Load order.** The plugin manager registers the builtins first, in the order of
``progresskit.builtin.DEFAULT_PLUGINS``: ``core`` (the core's config keys), ``trainer``,
``evaluator``, ``multi_stage``, ``progress``, ``heartbeat``, ``log``, ``json_file``,
``stdout``, ``webhook``, ``psutil``, ``local_process``. Then every entry-point plugin, sorted by
distribution name, then entry-point name; then the ``extra_plugins`` given to
``get_plugin_manager()``. ``progresskit plugins --json`` shows each plugin's
``load_order``. ``-p no:NAME`` and the ``disable_plugins:`` config key skip the plugin
NAME, builtin or not (``core`` cannot be disabled).

**Names are unique.** An entry point whose name is taken, by a builtin or by another
distribution's entry point, is refused with a ``PluginError`` naming both: a plugin never
silently replaces or hides another. Provide a builtin's runner type under a name of your
own instead (see below).

**Which answer wins.** Hooks are called in pluggy's order: the most recently registered
plugin first, so every third-party plugin is asked before the builtins, which are the
fallback. ``tryfirst=True`` puts an implementation before every unmarked one,
``trylast=True`` after them (the builtin ``local_process`` cancel is ``trylast``); among
implementations with the same mark, the most recently registered is still called first.
For a *firstresult* hook (``make_tracker``, ``resolve_target``, ``follow_target``,
``cancel``, ``can_cancel``) the first non-``None`` answer in that order wins and later
implementations are not called: a third-party tracker that provides a builtin's runner
type is the one used for it.
``process_info`` merges every answer, the first one for a work dir winning. Between
third-party plugins the order is reproducible but not a ranking: answer only for what is
yours, or mark the implementation ``tryfirst``/``trylast``.

**Hooks called plugin by plugin.** ``addconfig``, ``detect_runner``, ``describe_runner``
and ``sink_types`` are called one implementation at a time, in load order, so that every
answer names its plugin; no answer wins over another: two runner types claimed for one
directory are an ambiguity error, a config key or sink type declared twice is an error.
These four cannot be hook wrappers: a plugin implementing one with ``wrapper=True`` or
``hookwrapper=True`` is refused at registration with a ``PluginError`` naming the plugin
and the hook. The other hooks may be wrapped as pluggy allows.

Unless a hook is marked *firstresult* or called plugin by plugin, every implementation is
called and the non-``None`` results are collected into a list.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from progresskit.model.core import ProcessInfo, RunStatus
    from progresskit.plugin.config import Config, ConfigSchema
    from progresskit.plugin.sink import SinkType
    from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target

hookspec = pluggy.HookspecMarker("progresskit")
hookimpl = pluggy.HookimplMarker("progresskit")


# -- set-up ------------------------------------------------------------------------------


@hookspec
def progresskit_addoption(parser: argparse._ArgumentGroup) -> None:
    """Add command-line options to the commands that track runs (``status``, ``watch``,
    ``serve``).

    Called once for each of those commands while the command line is built, after plugins
    are loaded and before arguments are parsed; every plugin's implementation is called.
    Add options with ``parser.add_argument(...)``; use a ``--<plugin>-`` prefix to stay clear
    of other plugins (a clash is argparse's error). Parsed values reach
    :func:`progresskit_configure` as ``config.options``. Not called for library use.

    :param parser: the argument group "plugin options" of the command being built.
    :return: ``None``.
    """


@hookspec
def progresskit_addconfig(schema: ConfigSchema) -> None:
    """Declare the configuration keys this plugin reads.

    Called plugin by plugin: once for each plugin, right after it is registered, with a
    schema that records the plugin as the keys' owner. Declare each key with
    ``schema.add(key, types, default=..., help=...)``; a key another plugin declared already
    is a :class:`~progresskit.errors.ConfigError` naming both. Cannot be a hook wrapper.
    A YAML file or a config mapping holding a key that no plugin declared, or a value of a
    declared key of the wrong type, is rejected with an error naming the file, the key and
    what was expected. Keys are top-level (``epochs``, ``early_stopping``), as seed 001's
    plain config mappings are.

    :param schema: the registry of known keys.
    :return: ``None``.
    """


@hookspec
def progresskit_configure(config: Config) -> None:
    """React to the loaded, validated configuration.

    Called once per :class:`~progresskit.plugin.config.Config` after validation and before any
    run is tracked: for each config file and config mapping a query or command uses (the
    CLI's, a library call's). Every plugin's implementation is called. Raise
    :class:`~progresskit.errors.ConfigError` to refuse a value that the key's type alone
    cannot judge.

    :param config: values, the file they came from and parsed command-line options.
    :return: ``None``.
    """


# -- trackers ---------------------------------------------------------------------------


@hookspec
def progresskit_detect_runner(target: Target) -> str | None:
    """Claim a target directory for a runner type, or decline.

    Called for every directory that is a candidate run (the target itself, or each
    directory met while scanning a root) unless the config pins ``runner_type``. Look only
    at ``target.entries`` (one listing, shared by every plugin) and ``target.config``;
    do not read file contents: this runs for every directory of a large tree. Claim on
    evidence of the files only, and on configuration keys only when ``target.use_config``
    is true (a single explicit target, never a scan, where a parent's config applies to
    every directory below it).

    Called plugin by plugin, in load order: every plugin is asked and each claim names its
    plugin. No claim is a :class:`~progresskit.errors.NoTrackerError` listing the files
    seen, the config keys and every plugin's :func:`progresskit_describe_runner`; two
    different runner types claimed are an :class:`~progresskit.errors.AmbiguousRunnerError`
    naming the plugins. Never guess. Cannot be a hook wrapper.

    :param target: the directory, its entries and the config that applies to it.
    :return: the runner type claimed (a non-empty ``str``, e.g. ``"trainer"``), or ``None``
        to decline. Anything else is a :class:`~progresskit.errors.PluginError` naming the
        plugin.
    """


@hookspec(firstresult=True)
def progresskit_make_tracker(
    runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker | None:
    """Create the tracker for a run of ``runner_type``.

    Called after detection (or with the pinned ``runner_type``), once per run; the tracker
    is kept and asked again on later queries, so it may cache what it read.
    *firstresult*: the first non-``None`` answer in call order wins, so a third-party plugin
    providing a builtin's runner type is used instead of the builtin. No answer at all is a
    :class:`~progresskit.errors.NoTrackerError` naming the loaded runner types.

    :param runner_type: the type chosen for this run.
    :param work_dir: the run's directory.
    :param config: the validated plain config mapping that applies to the run.
    :return: a :class:`~progresskit.plugin.tracker.BaseProgressTracker`, or ``None`` when this
        plugin does not provide ``runner_type``.
    """


@hookspec
def progresskit_describe_runner() -> RunnerDescription | None:
    """Say what this plugin's tracker expects to find, for diagnostics.

    Called plugin by plugin, in load order: when detection finds no tracker, when no
    plugin provides a pinned runner type, and by ``progresskit plugins``. The text is shown
    verbatim in the "no tracker claims this directory" error, so make it specific
    (``"epoch_0/ directory, or 'epochs' in config"``). Cannot be a hook wrapper.

    :return: a :class:`~progresskit.plugin.tracker.RunnerDescription`, or ``None`` for plugins
        that provide no tracker.
    """


@hookspec(firstresult=True)
def progresskit_resolve_target(target: str, config: Mapping[str, Any]) -> list[RunStatus] | None:
    """Claim a command-line target that is not a directory (a server URL) and report its runs.

    Called by ``progresskit status`` for every target, before the target is treated as a
    work dir or a root of runs. Decline (return ``None``) anything that is not yours, such
    as every path when you handle URLs. Once a target is yours, never decline it because
    it cannot be read: raise :class:`~progresskit.errors.ProgresskitError` with a specific
    message (``"http://host:8188: does not answer like a ComfyUI server: ..."``), which the
    command reports with exit code 2. *firstresult*: the first non-``None`` answer in call
    order wins and the target is not looked up on disk.

    :param target: the target exactly as given on the command line.
    :param config: the validated config in force where the command runs.
    :return: one :class:`~progresskit.model.core.RunStatus` per run behind the target (possibly
        none), or ``None`` to decline.
    """


@hookspec(firstresult=True)
def progresskit_follow_target(
    target: str, config: Mapping[str, Any], changed: Callable[[], None]
) -> Callable[[], None] | None:
    """Follow a target that this plugin resolves, live, for as long as a watcher runs.

    Called once by a :class:`~progresskit.engine.monitor.Monitor` (``progresskit watch``,
    ``progresskit serve``, library use) whose root is a target that
    :func:`progresskit_resolve_target` claimed, before its first poll interval. Without a
    follower the monitor asks ``progresskit_resolve_target`` again every
    ``watch_poll_interval``; a plugin that can hear about changes (a server's event
    stream) follows the target instead and calls ``changed()``, from any thread, whenever
    the target's runs may have changed: the monitor then resolves the target again at
    once (at most every 0.1 s), and keeps its poll interval as a safety net. While
    following, ``progresskit_resolve_target`` should answer from what the follower knows
    rather than asking the outside system again. *firstresult*: the first non-``None``
    answer in call order wins.

    :param target: the target exactly as given to the monitor.
    :param config: the validated config in force where the monitor runs.
    :param changed: call it when the target's runs may have changed; cheap, thread-safe.
    :return: a function that stops following (called once, when the monitor stops), or
        ``None`` to decline (the target is then polled).
    """


# -- processes --------------------------------------------------------------------------


@hookspec
def progresskit_process_info(work_dirs: Sequence[str]) -> Mapping[str, ProcessInfo] | None:
    """Find the processes working on the given runs.

    Called once per status query with every run's work dir, when the caller did not supply
    process information itself (seed 001's ``config_to_process_info``). Every
    implementation is called and the answers are merged; for the same work dir the first
    answer in call order wins (a third-party source before the builtin ``psutil``).

    :param work_dirs: absolute paths of the runs' work dirs.
    :return: a mapping from work dir (as given) to the process found, or ``None``.
    """


@hookspec(firstresult=True)
def progresskit_cancel(run: RunStatus, grace_seconds: float) -> bool | None:
    """Stop the job behind ``run``, the way its system wants to be stopped.

    Called by ``progresskit serve`` for an authorised ``POST /api/runs/{id}/cancel`` of an
    active run, from a worker thread, and by ``progresskit cancel TARGET``, both through
    :func:`progresskit.engine.cancel.cancel_run` (blocking calls are fine; return promptly).
    A plugin that knows how to stop runs of ``run.progress.runner_type`` (an HTTP interrupt,
    a scheduler's cancel command) implements it; the builtin ``local_process`` plugin, which
    runs last, stops the run's local process once ``/proc`` proves it is the run's (the
    lease's registration, or its working directory or a file of the run it writes;
    docs/cancel.md): SIGTERM to it and to the processes it started, one by one (never a
    process group), SIGKILL to what is left after ``grace_seconds``.
    *firstresult*: the first non-``None`` answer in call order wins.

    :param run: the run's latest status, as the server last saw it.
    :param grace_seconds: how long the job may take to exit cleanly before it is killed.
    :return: ``True`` when the stop was initiated, ``None`` to decline. A plugin that owns
        the run but cannot stop it raises :class:`~progresskit.errors.ProgresskitError`
        saying why; the server answers 409 with that message.
    """


@hookspec(firstresult=True)
def progresskit_can_cancel(run: RunStatus) -> bool | None:
    """Whether this plugin's ``progresskit_cancel`` could stop ``run``'s job now.

    Called by ``progresskit serve`` for every active run each time its view is built (the
    dashboard offers Cancel only where the answer is ``True``: ``can_cancel`` in the run's
    view), on the event loop: answer from ``run`` alone (its ``process_info``, its
    ``progress.details``), with no I/O. A plugin that implements ``progresskit_cancel``
    implements this too, with the same idea of which runs are its own.
    *firstresult*: the first non-``None`` answer in call order wins; no answer is "no".

    :param run: the run's latest status (active).
    :return: ``True`` when a cancel would be attempted, ``False`` when this plugin owns the
        run but cannot stop it, ``None`` for a run that is not this plugin's.
    """


@hookspec(firstresult=True)
def progresskit_judge_run(run: RunStatus, now: float) -> RunStatus | None:
    """Give the word of the system that runs the job behind ``run`` (a scheduler).

    Called by the engine once for every run it evaluates, after the status rules, with
    the rules' verdict: ``run.progress.details`` holds what the run's lease recorded
    (``slurm_job_id``, ...). A plugin that knows the job (a batch scheduler that can say
    "job J is OUT_OF_MEMORY", which no file on this host shows) returns the run with
    that system's status, reason and cause (its own word in ``progress.source_status``);
    every other plugin declines. Called for every run, so decline cheaply and batch any
    question to the outside system across calls (one query per poll interval, cached).
    *firstresult*: the first non-``None`` answer in call order wins.

    :param run: the run as the engine's rules judged it.
    :param now: the time of the evaluation (Unix seconds).
    :return: the run as its scheduler sees it, or ``None`` to keep the engine's verdict.
        Never raise for a scheduler that cannot be asked: say so in the reason.
    """


# -- output -----------------------------------------------------------------------------


@hookspec
def progresskit_sink_types() -> Sequence[SinkType] | None:
    """Provide output sink types that a config's ``sinks:`` list may select by name.

    Called plugin by plugin, in load order: once per plugin manager, the first time a
    config's sinks are built, and by ``progresskit plugins``. A sink type names its options
    (checked like config keys) and builds a sink from validated options; see
    :class:`~progresskit.plugin.sink.SinkType`. Two plugins providing the same name is a
    :class:`~progresskit.errors.PluginError`. Cannot be a hook wrapper.

    :return: the sink types this plugin provides, or ``None``.
    """
