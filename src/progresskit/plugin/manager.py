"""The plugin manager: loads every plugin from the ``progresskit`` entry-point group.

Builtin trackers and sinks are registered by this package's own entry points, exactly as
a third party's are; nothing here names a tracker.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import attrs
import pluggy

from progresskit.errors import PluginError
from progresskit.plugin import hookspec
from progresskit.plugin.config import ConfigSchema
from progresskit.plugin.hooks import Hooks
from progresskit.plugin.sink import SinkType
from progresskit.plugin.tracker import RunnerDescription

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "PluginManager", "get_plugin_manager"]

ENTRY_POINT_GROUP = "progresskit"
_HOOK_PREFIX = "progresskit_"


@attrs.frozen
class PluginInfo:
    """Where a loaded plugin came from and what it provides."""

    name: str
    #: "builtin" (this distribution's own entry points), "entry point" or "registered".
    origin: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    runner_types: tuple[str, ...] = ()
    sink_types: tuple[str, ...] = ()


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows each plugin's origin, config schema and sinks."""

    def __init__(self) -> None:
        super().__init__("progresskit")
        self.add_hookspecs(hookspec)
        #: The typed hook facade: the only way progresskit calls hooks.
        self.hooks = Hooks(self)
        self.schema = ConfigSchema()
        self._origins: dict[str, tuple[str, str | None, str | None]] = {}
        from progresskit.plugin import coreconfig

        self.register_plugin(coreconfig, "core", origin="builtin")

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        # Like pytest: an unmarked ``progresskit_*`` function is an implementation, so a
        # misspelt hook name is reported by check_pending() instead of silently ignored.
        if opts is None and name.startswith(_HOOK_PREFIX) and callable(getattr(plugin, name, None)):
            return {}
        return opts

    def register_plugin(
        self,
        plugin: object,
        name: str,
        *,
        origin: str = "registered",
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register ``plugin`` under ``name`` and check it against the plugin API."""
        try:
            self.register(plugin, name)
        except ValueError as exc:
            raise PluginError(f"plugin '{name}': {exc}") from exc
        except pluggy.PluginValidationError as exc:
            self.unregister(name=name)
            raise PluginError(f"plugin '{name}' does not follow the plugin API: {exc}") from exc
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            self.unregister(name=name)
            known = ", ".join(sorted(n for n in dir(hookspec) if n.startswith(_HOOK_PREFIX)))
            raise PluginError(
                f"plugin '{name}' implements an unknown hook: {exc} (known hooks: {known})"
            ) from exc
        self._origins[name] = (origin, distribution, version)
        # Only the new plugin declares now, so every key is recorded with its owner.
        for impl in self.hook.progresskit_addconfig.get_hookimpls():
            if impl.plugin_name == name:
                impl.function(schema=self.schema.for_owner(name))

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin of ``group`` that is not blocked (``-p no:NAME``)."""
        for ep in sorted(md.entry_points(group=group), key=lambda e: e.name):
            if self.is_blocked(ep.name) or self.has_plugin(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin '{ep.name}' ({ep.value}, from distribution {dist} {version}) "
                    f"failed to import: {type(exc).__name__}: {exc}. "
                    f"Disable it with '-p no:{ep.name}' or uninstall {dist}."
                ) from exc
            origin = "builtin" if dist == "progresskit" else "entry point"
            self.register_plugin(plugin, ep.name, origin=origin, distribution=dist, version=version)

    # -- what the plugins provide ---------------------------------------------------------

    def runner_descriptions(self) -> list[RunnerDescription]:
        """What every tracker plugin expects to find (for diagnostics)."""
        return list(self.hook.progresskit_describe_runner())

    @functools.cached_property
    def sink_types(self) -> Mapping[str, SinkType]:
        """Every sink type by name. Two plugins providing the same name is an error."""
        found: dict[str, SinkType] = {}
        for impl in self.hook.progresskit_sink_types.get_hookimpls():
            provided = cast("Sequence[SinkType] | None", impl.function()) or ()
            for sink_type in provided:
                if sink_type.name in found:
                    raise PluginError(
                        f"sink type '{sink_type.name}' is provided twice "
                        f"(second time by plugin '{impl.plugin_name}')"
                    )
                found[sink_type.name] = sink_type
        return found

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its origin and what it provides."""
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda p: p[0]):
            if plugin is None:  # blocked with -p no:NAME
                continue
            origin, dist, version = self._origins.get(name, ("registered", None, None))
            hooks = sorted(caller.name for caller in self.get_hookcallers(plugin) or ())
            runners = _call_own(plugin, "progresskit_describe_runner")
            sinks = _call_own(plugin, "progresskit_sink_types")
            infos.append(
                PluginInfo(
                    name=name,
                    origin=origin,
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    distribution=dist,
                    version=version,
                    hooks=tuple(hooks),
                    runner_types=(runners.runner_type,) if runners else (),
                    sink_types=tuple(s.name for s in sinks or ()),
                )
            )
        return infos


def _call_own(plugin: object, hook_name: str) -> Any:
    function = getattr(plugin, hook_name, None)
    return function() if callable(function) else None


def get_plugin_manager(
    disabled: Iterable[str] = (), extra_plugins: Sequence[tuple[str, object]] = ()
) -> PluginManager:
    """A new manager with every entry-point plugin loaded, except the ``disabled`` names.

    ``extra_plugins`` (name, plugin) pairs are registered after the entry points, e.g. a
    plugin object defined in a test or a script.
    """
    pm = PluginManager()
    for name in disabled:
        if name == "core":
            raise PluginError("the core plugin cannot be disabled")
        pm.set_blocked(name)
    pm.load_entry_points()
    for name, plugin in extra_plugins:
        pm.register_plugin(plugin, name)
    return pm


@functools.lru_cache(maxsize=1)
def default_plugin_manager() -> PluginManager:
    """The manager library calls use when none is given: every installed plugin."""
    return get_plugin_manager()
