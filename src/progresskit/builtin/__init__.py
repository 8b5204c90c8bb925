"""progresskit's own plugins, registered in code before any entry point (pytest's way).

:data:`DEFAULT_PLUGINS` is the registration order; the plugin manager imports each module by
name, as it loads an entry point, so the plugin API never depends on its plugins. What the
order means for which answer wins is the precedence rule of
:mod:`progresskit.plugin.hookspec` (docs/hooks.md).
"""

from __future__ import annotations

__all__ = ["DEFAULT_PLUGINS"]

#: (plugin name, module) of every builtin plugin, in registration order: the core first (its
#: config keys exist before any plugin declares its own), then the trackers, the sinks, the
#: process source and cancel. The names are what ``-p no:NAME``,
#: ``disable_plugins:`` and ``progresskit plugins`` use.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core", "progresskit.plugin.coreconfig"),
    ("trainer", "progresskit.builtin.trainer"),
    ("evaluator", "progresskit.builtin.evaluator"),
    ("multi_stage", "progresskit.builtin.multistage"),
    ("progress", "progresskit.builtin.progressfile"),
    ("heartbeat", "progresskit.builtin.heartbeat"),
    ("log", "progresskit.builtin.logtail"),
    ("json_file", "progresskit.builtin.json_file"),
    ("stdout", "progresskit.builtin.stdout"),
    ("webhook", "progresskit.builtin.webhook"),
    ("psutil", "progresskit.builtin.processes"),
    ("local_process", "progresskit.builtin.local_process"),
)
