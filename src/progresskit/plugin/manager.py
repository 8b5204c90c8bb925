"""The plugin manager: the builtin plugins, then every plugin of the ``progresskit``
entry-point group.

Load order, which the precedence rule of :mod:`progresskit.plugin.hookspec` builds on:

1. the builtins, in the order of :data:`progresskit.builtin.DEFAULT_PLUGINS`, each imported
   by its module name as an entry point is (the plugin API depends on no plugin);
2. entry-point plugins, by distribution name, then entry-point name;
3. the ``extra_plugins`` given to :func:`get_plugin_manager`, in their order.

Nothing here names a tracker.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Mapping, Sequence
from types import FunctionType, MethodType, ModuleType
from typing import cast

import attrs
import pluggy

from progresskit import __version__
from progresskit.errors import PluginError
from progresskit.plugin import entrypoints, hookspec
from progresskit.plugin.config import ConfigSchema
from progresskit.plugin.hooks import Hooks
from progresskit.plugin.sink import SinkType
from progresskit.plugin.tracker import RunnerDescription

__all__ = [
    "CORE_PLUGIN",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "plugin_names",
]

ENTRY_POINT_GROUP = "progresskit"
#: The builtin plugin that declares the core's config keys; it cannot be disabled.
CORE_PLUGIN = "core"
#: Where :data:`~progresskit.builtin.DEFAULT_PLUGINS` lives. Imported by name because the
#: builtins are plugins built on this layer, not part of it.
_BUILTIN_PACKAGE = "progresskit.builtin"
_DISTRIBUTION = "progresskit"
_HOOK_PREFIX = "progresskit_"
#: What pluggy takes for a hook implementation (``specname=`` lets it have any name).
_HOOKABLE = (FunctionType, MethodType, staticmethod, classmethod)


def _builtin_plugins() -> tuple[tuple[str, str], ...]:
    """(name, module) of every builtin plugin, in registration order."""
    package = importlib.import_module(_BUILTIN_PACKAGE)
    return cast("tuple[tuple[str, str], ...]", package.DEFAULT_PLUGINS)


def _entry_points(group: str) -> list[entrypoints.EntryPoint]:
    """The third-party plugins of ``group``, by distribution name, then entry-point name.

    Entry points of progresskit's own distribution are left out: its builtins are registered
    in code, and an install made before they were still lists them as entry points.
    """
    found = [ep for ep in entrypoints.entry_points(group) if ep.distribution != _DISTRIBUTION]
    return sorted(found, key=lambda ep: (ep.distribution or "", ep.name))


def plugin_names(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """The name of every plugin :func:`get_plugin_manager` loads, in load order, without
    importing any: the builtins, then the entry points of ``group``."""
    return [name for name, _ in _builtin_plugins()] + [ep.name for ep in _entry_points(group)]


@attrs.frozen
class PluginInfo:
    """Where a loaded plugin came from and what it provides."""

    name: str
    #: "builtin" (registered in code by progresskit), "entry point" or "registered".
    origin: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    runner_types: tuple[str, ...] = ()
    sink_types: tuple[str, ...] = ()
    #: The plugin's place in the load order (0: the core), which decides precedence.
    load_order: int = 0


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows each plugin's origin, config schema and sinks."""

    def __init__(self) -> None:
        super().__init__("progresskit")
        self.add_hookspecs(hookspec)
        #: The typed hook facade: the only way progresskit calls hooks.
        self.hooks = Hooks(self)
        self.schema = ConfigSchema()
        #: Name -> (origin, distribution, version), in registration order.
        self._origins: dict[str, tuple[str, str | None, str | None]] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if (
            isinstance(plugin, ModuleType)
            and not name.startswith(_HOOK_PREFIX)
            and not isinstance(plugin.__dict__.get(name), _HOOKABLE)
        ):
            # Most names of a plugin module are imports and constants, none of them a hook
            # (pluggy takes functions only); its static lookup of each would be a third of
            # the manager's start-up.
            return None
        opts = super().parse_hookimpl_opts(plugin, name)
        # Like pytest: an unmarked ``progresskit_*`` function is an implementation, so a
        # misspelt hook name is reported by check_pending() instead of silently ignored.
        if opts is None and name.startswith(_HOOK_PREFIX) and callable(getattr(plugin, name, None)):
            return cast("pluggy.HookimplOpts", {})
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
        """Register ``plugin`` under ``name`` and check it against the plugin API.

        :raises PluginError: naming the plugin, when the name is taken, a hook is unknown or
            has arguments its specification lacks, or a per-plugin hook is a hook wrapper.
        """
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
        try:
            self.hooks.check_plugin(name)
        except PluginError:
            self.unregister(name=name)
            raise
        self._origins[name] = (origin, distribution, version)
        # Only the new plugin declares now, so every key is recorded with its owner.
        self.hooks.addconfig(name, self.schema.for_owner(name))

    def load_builtins(self) -> None:
        """Import and register every builtin plugin that is not blocked (``-p no:NAME``),
        in :data:`~progresskit.builtin.DEFAULT_PLUGINS` order.

        :raises PluginError: when the core plugin is blocked.
        """
        for name, module in _builtin_plugins():
            if self.is_blocked(name):
                if name == CORE_PLUGIN:
                    raise PluginError(f"the {CORE_PLUGIN} plugin cannot be disabled")
                continue
            self.register_plugin(
                importlib.import_module(module),
                name,
                origin="builtin",
                distribution=_DISTRIBUTION,
                version=__version__,
            )

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin of ``group`` that is not blocked (``-p no:NAME``),
        by distribution name, then entry-point name.

        :raises PluginError: naming the plugin and its distribution, when it fails to import
            or its name is taken by a plugin registered before it (a builtin's included).
        """
        for ep in _entry_points(group):
            if self.is_blocked(ep.name):
                continue
            dist, version = ep.distribution, ep.version
            where = f"plugin '{ep.name}' ({ep.value}, from distribution {dist} {version})"
            if self.has_plugin(ep.name):
                origin, other, _ = self._origins[ep.name]
                raise PluginError(
                    f"{where}: the name is taken by the {origin} plugin '{ep.name}'"
                    f"{f' of distribution {other}' if other else ''}; plugin names are "
                    f"unique, so {dist} must use another entry-point name. Uninstall {dist}, "
                    f"or disable both with '-p no:{ep.name}'."
                )
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"{where} failed to import: {type(exc).__name__}: {exc}. "
                    f"Disable it with '-p no:{ep.name}' or uninstall {dist}."
                ) from exc
            self.register_plugin(
                plugin, ep.name, origin="entry point", distribution=dist, version=version
            )

    # -- what the plugins provide ---------------------------------------------------------

    def runner_descriptions(self) -> list[RunnerDescription]:
        """What every tracker plugin expects to find (for diagnostics), in load order."""
        return self.hooks.describe_runner()

    @functools.cached_property
    def sink_types(self) -> Mapping[str, SinkType]:
        """Every sink type by name. Two plugins providing the same name is an error."""
        found: dict[str, SinkType] = {}
        for plugin_name, sink_type in self.hooks.sink_types():
            if sink_type.name in found:
                raise PluginError(
                    f"sink type '{sink_type.name}' is provided twice "
                    f"(second time by plugin '{plugin_name}')"
                )
            found[sink_type.name] = sink_type
        return found

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin with its origin and what it provides, by name."""
        loaded = [(n, p) for n, p in self.list_name_plugin() if p is not None]  # not blocked
        infos = []
        for order, (name, plugin) in enumerate(loaded):
            origin, dist, version = self._origins.get(name, ("registered", None, None))
            infos.append(
                PluginInfo(
                    name=name,
                    origin=origin,
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    distribution=dist,
                    version=version,
                    hooks=tuple(self.hooks.implemented(name)),
                    runner_types=tuple(d.runner_type for d in self.hooks.describe_runner(name)),
                    sink_types=tuple(s.name for _, s in self.hooks.sink_types(name)),
                    load_order=order,
                )
            )
        return sorted(infos, key=lambda info: info.name)


def get_plugin_manager(
    disabled: Iterable[str] = (), extra_plugins: Sequence[tuple[str, object]] = ()
) -> PluginManager:
    """A new manager with the builtins, then every entry-point plugin, except the
    ``disabled`` names (``-p no:NAME``, ``disable_plugins:``).

    ``extra_plugins`` (name, plugin) pairs are registered last, e.g. a plugin object defined
    in a test or a script.

    :raises PluginError: when ``disabled`` names the core plugin, or a plugin cannot be loaded.
    """
    pm = PluginManager()
    for name in disabled:
        pm.set_blocked(name)
    pm.load_builtins()
    pm.load_entry_points()
    for name, plugin in extra_plugins:
        pm.register_plugin(plugin, name)
    return pm


@functools.lru_cache(maxsize=1)
def default_plugin_manager() -> PluginManager:
    """The manager library calls use when none is given: every installed plugin."""
    return get_plugin_manager()
