"""The typed hook facade: the one place that calls the plugin hooks.

Everything else in progresskit asks :attr:`PluginManager.hooks <progresskit.plugin.manager.
PluginManager.hooks>` (tox 4's way): one typed method per hook, which knows whether the
hook is *firstresult*, how results are merged, and which hooks are called plugin by plugin
(so that an answer names its plugin). Nothing outside this module reads ``pm.hook`` or a
hook's implementations (``tests/test_plugin_manager.py`` checks it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from progresskit.errors import PluginError

if TYPE_CHECKING:
    from pluggy import HookImpl, PluginManager

    from progresskit.model.core import ProcessInfo, RunStatus
    from progresskit.plugin.config import Config, ConfigSchema
    from progresskit.plugin.sink import SinkType
    from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target

__all__ = ["PER_PLUGIN_HOOKS", "Hooks"]

#: Hooks whose implementations are called one by one, each answer kept with its plugin.
#: A hook wrapper cannot take part in such a call, so one is refused at registration.
PER_PLUGIN_HOOKS = (
    "progresskit_addconfig",
    "progresskit_detect_runner",
    "progresskit_describe_runner",
    "progresskit_sink_types",
)


class Hooks:
    """Typed calls of every hook of :mod:`progresskit.plugin.hookspec`."""

    def __init__(self, pm: PluginManager) -> None:
        self._pm = pm

    # -- per-plugin calls -----------------------------------------------------------------

    def _impls(self, hook_name: str, plugin_name: str | None = None) -> list[HookImpl]:
        # pluggy keeps them in registration order (trylast ones first, tryfirst ones last)
        # and calls them in the reverse order.
        ordered: list[HookImpl] = getattr(self._pm.hook, hook_name).get_hookimpls()
        if plugin_name is not None:
            ordered = [i for i in ordered if i.plugin_name == plugin_name]
        return ordered

    @staticmethod
    def _call(impl: HookImpl, **kwargs: Any) -> Any:
        return impl.function(*(kwargs[name] for name in impl.argnames))

    def check_plugin(self, plugin_name: str) -> None:
        """Refuse a hook wrapper of the just registered ``plugin_name`` on a per-plugin hook.

        Such a hook's implementations are called one by one, never through pluggy's call
        loop, so a wrapper would be called as if it were the implementation: its generator
        would be taken for the answer.

        :raises PluginError: naming the plugin and the hook.
        """
        for hook_name in PER_PLUGIN_HOOKS:
            for impl in self._impls(hook_name, plugin_name):
                if impl.wrapper or impl.hookwrapper:
                    raise PluginError(
                        f"plugin '{plugin_name}': {hook_name} is a hook wrapper, but that hook "
                        f"is called plugin by plugin and cannot be wrapped; implement it "
                        f"without wrapper=True / hookwrapper=True"
                    )

    def implemented(self, plugin_name: str) -> list[str]:
        """The names of the hooks that the registered plugin ``plugin_name`` implements."""
        callers = self._pm.get_hookcallers(self._pm.get_plugin(plugin_name)) or ()
        return sorted(caller.name for caller in callers)

    def addconfig(self, plugin_name: str, schema: ConfigSchema) -> None:
        """Let the plugin ``plugin_name`` (just registered) declare its config keys."""
        for impl in self._impls("progresskit_addconfig", plugin_name):
            self._call(impl, schema=schema)

    def detect_runner(self, target: Target) -> dict[str, list[str]]:
        """Runner type -> the plugins that claim ``target`` for it, in registration order."""
        found: dict[str, list[str]] = {}
        for impl in self._impls("progresskit_detect_runner"):
            runner_type = self._call(impl, target=target)
            if runner_type is None:
                continue
            if not isinstance(runner_type, str) or not runner_type:
                raise PluginError(
                    f"plugin '{impl.plugin_name}': progresskit_detect_runner returned "
                    f"{runner_type!r}; expected a runner type (a non-empty str) or None"
                )
            found.setdefault(runner_type, []).append(impl.plugin_name)
        return found

    def describe_runner(self, plugin_name: str | None = None) -> list[RunnerDescription]:
        """What each tracker plugin (or just ``plugin_name``) expects, in registration order."""
        impls = self._impls("progresskit_describe_runner", plugin_name)
        described = (self._call(impl) for impl in impls)
        return [d for d in described if d is not None]

    def sink_types(self, plugin_name: str | None = None) -> list[tuple[str, SinkType]]:
        """(plugin name, sink type) for every sink type provided, in registration order."""
        found: list[tuple[str, SinkType]] = []
        for impl in self._impls("progresskit_sink_types", plugin_name):
            provided = cast("Sequence[SinkType] | None", self._call(impl)) or ()
            found += [(impl.plugin_name, sink_type) for sink_type in provided]
        return found

    # -- ordinary hook calls ----------------------------------------------------------------

    def addoption(self, parser: argparse._ArgumentGroup) -> None:
        """Let every plugin add its options to ``parser``, a command's "plugin options"."""
        self._pm.hook.progresskit_addoption(parser=parser)

    def configure(self, config: Config) -> None:
        """Show every plugin the validated ``config``; a plugin may raise ConfigError."""
        self._pm.hook.progresskit_configure(config=config)

    def make_tracker(
        self, runner_type: str, work_dir: str, config: Mapping[str, Any]
    ) -> BaseProgressTracker | None:
        """The tracker of the first plugin that provides ``runner_type``, or ``None``."""
        return cast(
            "BaseProgressTracker | None",
            self._pm.hook.progresskit_make_tracker(
                runner_type=runner_type, work_dir=work_dir, config=config
            ),
        )

    def resolve_target(self, target: str, config: Mapping[str, Any]) -> list[RunStatus] | None:
        """The runs behind a target the first claiming plugin resolves, or ``None``."""
        return cast(
            "list[RunStatus] | None",
            self._pm.hook.progresskit_resolve_target(target=target, config=config),
        )

    def follow_target(
        self, target: str, config: Mapping[str, Any], changed: Callable[[], None]
    ) -> Callable[[], None] | None:
        """The first claiming plugin's live follower of ``target``: its stop function."""
        return cast(
            "Callable[[], None] | None",
            self._pm.hook.progresskit_follow_target(target=target, config=config,
                                                    changed=changed),
        )

    def process_info(self, work_dirs: Sequence[str]) -> dict[str, ProcessInfo]:
        """Work dir -> process, merged over every plugin (the first answer for a dir wins)."""
        merged: dict[str, ProcessInfo] = {}
        for found in self._pm.hook.progresskit_process_info(work_dirs=work_dirs):
            for work_dir, info in (found or {}).items():
                merged.setdefault(work_dir, info)
        return merged

    def cancel(self, run: RunStatus, grace_seconds: float) -> bool | None:
        """``True`` once the first plugin that owns ``run`` started stopping it, or ``None``."""
        return cast(
            "bool | None", self._pm.hook.progresskit_cancel(run=run, grace_seconds=grace_seconds)
        )

    def can_cancel(self, run: RunStatus) -> bool:
        """Whether the first plugin that owns ``run`` says it could stop it (no answer: no)."""
        return bool(self._pm.hook.progresskit_can_cancel(run=run))

    def judge_run(self, run: RunStatus, now: float) -> RunStatus:
        """``run`` as the first plugin that knows its job (a scheduler) judges it, else
        ``run`` unchanged."""
        judged = self._pm.hook.progresskit_judge_run(run=run, now=now)
        return run if judged is None else cast("RunStatus", judged)
