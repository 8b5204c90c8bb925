"""Declarative tracker plugins: one :class:`TrackerSpec` implements the three tracker hooks.

A tracker plugin says which tracker class reads its runs, what evidence claims a directory
and how to describe that evidence; the spec turns this into ``progresskit_detect_runner``,
``progresskit_make_tracker`` and ``progresskit_describe_runner`` (the hook API stays the
same for plugins that implement the hooks by hand)::

    from progresskit import BaseProgressTracker, TrackerSpec

    class MyTracker(BaseProgressTracker):
        runner_type = "mytool"
        ...

    tracker = TrackerSpec(MyTracker, claim=lambda t: t.has_file("mytool.json"),
                          expects="mytool.json file")

The spec is a plugin object: an entry point may name it directly
(``mytool = "mypackage.plugin:tracker"``). A plugin module that implements other hooks
too (``progresskit_addconfig``) binds the spec's hooks under their names instead, and its
entry point names the module::

    progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = (
        tracker.hooks
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target

__all__ = ["TrackerSpec"]


@attrs.frozen
class TrackerSpec:
    """A tracker plugin, declared: its tracker class, its claim and its description."""

    #: Builds the tracker of one run: ``tracker(work_dir, config)``, usually the class. It
    #: may raise :class:`~progresskit.errors.RunnerDetectionError` for a config it cannot
    #: track (a pinned ``runner_type`` without the keys the tracker needs).
    tracker: Callable[[str, Mapping[str, Any]], BaseProgressTracker]
    #: Whether a directory is a run of this type, from ``target.entries`` (and
    #: ``target.config`` when ``target.use_config``); never reads file contents.
    claim: Callable[[Target], bool]
    #: The evidence ``claim`` looks for, shown verbatim in diagnostics and by
    #: ``progresskit plugins``.
    expects: str
    #: The runner type; defaults to the tracker class's ``runner_type``.
    runner_type: str = attrs.field()

    @runner_type.default
    def _runner_type(self) -> str:
        runner_type = getattr(self.tracker, "runner_type", None)
        if not isinstance(runner_type, str) or not runner_type:
            raise TypeError(
                f"TrackerSpec({self.tracker!r}): give runner_type=, or set the class "
                "attribute runner_type on the tracker class"
            )
        return runner_type

    @property
    def __name__(self) -> str:
        """The tracker's module: what ``progresskit plugins`` shows as the plugin's module
        when an entry point names the spec itself."""
        return self.tracker.__module__

    @hookimpl
    def progresskit_detect_runner(self, target: Target) -> str | None:
        """:attr:`runner_type` when :attr:`claim` accepts ``target``, else ``None``."""
        return self.runner_type if self.claim(target) else None

    @hookimpl
    def progresskit_make_tracker(
        self, runner_type: str, work_dir: str, config: Mapping[str, Any]
    ) -> BaseProgressTracker | None:
        """A new :attr:`tracker` for a run of :attr:`runner_type`; ``None`` for other types."""
        return self.tracker(work_dir, config) if runner_type == self.runner_type else None

    @hookimpl
    def progresskit_describe_runner(self) -> RunnerDescription:
        """:attr:`runner_type`, :attr:`expects` and the tracker class's ``log_pattern``."""
        pattern = getattr(self.tracker, "log_pattern", None)
        return RunnerDescription(
            self.runner_type, self.expects, pattern if isinstance(pattern, str) else None
        )

    @property
    def hooks(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """The hooks ``progresskit_detect_runner``, ``progresskit_make_tracker`` and
        ``progresskit_describe_runner``, in that order, to bind in a plugin module."""
        return (
            self.progresskit_detect_runner,
            self.progresskit_make_tracker,
            self.progresskit_describe_runner,
        )
