"""Exceptions. Each message says what went wrong, where, and what was expected."""

from __future__ import annotations

__all__ = [
    "AmbiguousRunnerError",
    "ConfigError",
    "FormatError",
    "NoTrackerError",
    "PluginError",
    "ProgresskitError",
    "RunnerDetectionError",
]


class ProgresskitError(Exception):
    """Base of every error progresskit raises on purpose."""


class RunnerDetectionError(ProgresskitError, ValueError):
    """No single tracker can be chosen for a target (seed 001 raised ``ValueError``)."""


class NoTrackerError(RunnerDetectionError):
    """No loaded tracker plugin claims the target."""


class AmbiguousRunnerError(RunnerDetectionError):
    """More than one tracker plugin claims the target; pin ``runner_type`` in config."""


class ConfigError(ProgresskitError, ValueError):
    """A configuration file or mapping is invalid."""


class FormatError(ProgresskitError, ValueError):
    """A file a tracker reads does not hold what it should."""


class PluginError(ProgresskitError):
    """A plugin failed to load or does not follow the plugin API."""
