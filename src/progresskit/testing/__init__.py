"""Testing tools for progresskit plugin authors (docs/testing.md).

- :class:`TrackerConformance`: the conformance suite a tracker plugin runs against itself;
- fixtures (``progresskit_run_dir``, ``progresskit_config``, ``progresskit_cli``,
  ``progresskit_plugin_manager``, ``progresskit_history``), enabled in every pytest session
  by the ``pytest11`` entry point of progresskit (:mod:`progresskit.testing.plugin`);
- the same helpers as plain functions (:func:`make_run_dir`, :func:`run_cli`, ...);
- hypothesis strategies in :mod:`progresskit.testing.strategies` (needs ``hypothesis``).

Needs pytest; it is not imported by ``import progresskit``.
"""

from progresskit.testing.conformance import TrackerConformance
from progresskit.testing.helpers import (
    CliResult,
    backdate_tree,
    imports_outside_public_api,
    installed_plugin_names,
    make_run_dir,
    plugin_manager,
    run_cli,
    write_config,
)

__all__ = [
    "CliResult",
    "TrackerConformance",
    "backdate_tree",
    "imports_outside_public_api",
    "installed_plugin_names",
    "make_run_dir",
    "plugin_manager",
    "run_cli",
    "write_config",
]
