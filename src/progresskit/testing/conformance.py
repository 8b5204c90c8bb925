"""The tracker conformance suite: what every tracker plugin must do, as pytest tests.

A tracker plugin runs it against itself by subclassing :class:`TrackerConformance` in a
test module (the class name must start with ``Test`` for pytest to collect it)::

    from pathlib import Path
    from progresskit.testing import TrackerConformance

    class TestMyTracker(TrackerConformance):
        plugin_name = "mytracker"          # its entry-point name
        runner_type = "mytracker"

        def make_valid_run(self, directory: Path) -> Path: ...
        def make_corrupt_run(self, directory: Path) -> Path: ...
        def make_foreign_dir(self, directory: Path) -> Path: ...
        def mutate_run(self, work_dir: Path) -> None: ...

Each ``make_*`` method receives a fresh, empty directory and returns the directory to use
(it or one below it). Every failure message names the rule broken and what to change.
See docs/testing.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from progresskit.engine.detection import detect, make_tracker
from progresskit.engine.session import Tracking
from progresskit.errors import AmbiguousRunnerError, NoTrackerError, ProgresskitError
from progresskit.formats.jsonio import to_json
from progresskit.model.converter import structure, unstructure
from progresskit.model.core import ProgressInfo, RunStatus, Status
from progresskit.plugin.manager import PluginManager, get_plugin_manager
from progresskit.plugin.tracker import BaseProgressTracker, Target, list_entries
from progresskit.testing.helpers import backdate_tree, installed_plugin_names, plugin_manager

__all__ = ["TrackerConformance"]

#: Fields that may differ between two reads of unchanged files because they count from
#: "now" (time elapsed, time remaining); left out when two results are compared.
CLOCK_FIELDS = frozenset({"elapsed_seconds", "eta_seconds", "eta_low_seconds", "eta_high_seconds"})
#: How old the sample's files are made before caching is tested: well past the two seconds
#: within which a just-written file's mtime cannot be trusted.
SETTLED_AGE = 3600.0
_NOT_A_RUNNER_TYPE = "progresskit-conformance-no-such-runner-type"


def comparable(progress: ProgressInfo) -> dict[str, Any]:
    """``progress`` as plain data without the fields that count from the clock."""
    data: dict[str, Any] = unstructure(progress)
    return {k: v for k, v in data.items() if k not in CLOCK_FIELDS}


def _listing(path: Path) -> list[str]:
    entries = list_entries(str(path))
    return sorted(f"{n}/" if d else n for n, d in entries.items())


class TrackerConformance:
    """Subclass as ``Test<Something>`` and fill in the attributes and methods below."""

    #: The plugin's name: its entry-point name when installed (``[project.entry-points.
    #: progresskit] NAME = "module"``); the suite then loads it through that entry point.
    plugin_name: ClassVar[str]
    #: The runner type the plugin's detection returns and its tracker reports.
    runner_type: ClassVar[str]
    #: The plugin module or object, for a plugin that is not installed; leave ``None`` to
    #: load the installed entry point named ``plugin_name`` (which tests the entry point).
    plugin: ClassVar[object | None] = None
    #: Config values the samples are tracked with (keys the plugin declares), e.g.
    #: ``{"epochs": 10}``. Detection is still tested on file evidence alone.
    config: ClassVar[Mapping[str, Any]] = {}

    # -- what the plugin author provides ---------------------------------------------------

    def make_valid_run(self, directory: Path) -> Path:
        """Write a realistic, healthy, unfinished run of your runner into ``directory``."""
        raise NotImplementedError(self._missing("make_valid_run", "a valid run of yours"))

    def make_corrupt_run(self, directory: Path) -> Path:
        """Write a run of yours whose files are corrupt (bad JSON, wrong types, cut short).

        Your detection must still claim it; your tracker must report the problem in
        ``ProgressInfo.error_message`` or ``warnings`` instead of raising.
        """
        raise NotImplementedError(self._missing("make_corrupt_run", "a corrupt run of yours"))

    def make_foreign_dir(self, directory: Path) -> Path:
        """Write a directory your plugin must NOT claim: one that looks close to yours
        (same kind of files) but belongs to another tool, or a plain data directory."""
        raise NotImplementedError(self._missing("make_foreign_dir", "a directory not yours"))

    def mutate_run(self, work_dir: Path) -> None:
        """Change the valid run in place the way your source does when it makes progress
        (write the next checkpoint, append an event), so that its progress changes."""
        raise NotImplementedError(self._missing("mutate_run", "progress made by the run"))

    def _missing(self, method: str, what: str) -> str:
        return (
            f"{type(self).__name__}: implement {method}(self, ...) to provide {what}; "
            f"see progresskit.testing.TrackerConformance and docs/testing.md"
        )

    # -- set-up ----------------------------------------------------------------------------

    def _name(self) -> str:
        name = getattr(self, "plugin_name", None)
        if not isinstance(name, str) or not name:
            pytest.fail(
                f"{type(self).__name__}: set the class attribute plugin_name to your plugin's "
                f"entry-point name (installed: {installed_plugin_names()})",
                pytrace=False,
            )
        return name

    def _runner_type(self) -> str:
        runner_type = getattr(self, "runner_type", None)
        if not isinstance(runner_type, str) or not runner_type:
            pytest.fail(
                f"{type(self).__name__}: set the class attribute runner_type to the runner "
                f"type your plugin claims directories for",
                pytrace=False,
            )
        return runner_type

    def registered_name(self) -> str:
        """The name the plugin under test is registered under: ``plugin_name``, unless a
        ``plugin`` object is tested while an entry point of that name is installed."""
        name = self._name()
        if self.plugin is not None and name in installed_plugin_names():
            return f"{name}-under-test"
        return name

    def own_plugin_manager(self) -> PluginManager:
        """A manager with the core and this plugin only."""
        name = self._name()
        try:
            if self.plugin is not None:
                extra = [(self.registered_name(), self.plugin)]
                return plugin_manager(only=(), extra_plugins=extra)
            return plugin_manager(only=[name])
        except ProgresskitError as exc:
            pytest.fail(f"plugin '{name}' cannot be loaded: {exc}", pytrace=False)

    def full_plugin_manager(self) -> PluginManager:
        """A manager with every installed plugin and this one."""
        name = self._name()
        try:
            if self.plugin is None:
                return get_plugin_manager()
            # The object under test replaces an installed plugin of the same name.
            registered = self.registered_name()
            return get_plugin_manager(
                disabled=[name] if registered != name else [],
                extra_plugins=[(registered, self.plugin)],
            )
        except ProgresskitError as exc:
            pytest.fail(f"plugin '{name}' cannot be loaded with the others: {exc}", pytrace=False)

    def tracked_config(self, pm: PluginManager) -> dict[str, Any]:
        """``config`` validated by ``pm`` (declared defaults filled in), as trackers get it."""
        try:
            return pm.schema.validate(dict(self.config), f"{type(self).__name__}.config")
        except ProgresskitError as exc:
            pytest.fail(f"{exc}: the class attribute 'config' must hold keys your plugin "
                        f"declares in progresskit_addconfig", pytrace=False)

    def _sample(self, tmp_path: Path, kind: str) -> Path:
        directory = tmp_path / kind
        directory.mkdir()
        made = getattr(self, f"make_{kind}")(directory)
        path = Path(made) if made is not None else None
        if path is None or not path.is_dir():
            pytest.fail(
                f"make_{kind}() must return the directory it wrote (an existing directory), "
                f"got {made!r}",
                pytrace=False,
            )
        return path

    def _tracker(self, pm: PluginManager, work_dir: Path) -> BaseProgressTracker:
        runner_type = self._runner_type()
        try:
            tracker = make_tracker(pm, runner_type, str(work_dir), self.tracked_config(pm))
        except ProgresskitError as exc:
            pytest.fail(
                f"progresskit_make_tracker(runner_type='{runner_type}') failed for the sample "
                f"{work_dir}: {exc}",
                pytrace=False,
            )
        if not isinstance(tracker, BaseProgressTracker):
            pytest.fail(
                f"progresskit_make_tracker() returned {type(tracker).__name__}; it must return "
                f"a subclass of progresskit.BaseProgressTracker",
                pytrace=False,
            )
        return tracker

    def _progress(
        self, tracker: BaseProgressTracker, sample: str, *, fresh: bool = False
    ) -> ProgressInfo:
        try:
            progress = tracker.calculate_progress() if fresh else tracker.get_progress()
        except Exception as exc:
            pytest.fail(
                f"{type(tracker).__name__} raised {type(exc).__name__}: {exc} while reading "
                f"{sample} ({tracker.work_dir}). A tracker must never raise for what it "
                f"reads: catch the error (OSError, ValueError, KeyError, TypeError...) and "
                f"report it in ProgressInfo.error_message or warnings",
                pytrace=False,
            )
        if not isinstance(progress, ProgressInfo):
            pytest.fail(
                f"{type(tracker).__name__}.calculate_progress() returned "
                f"{type(progress).__name__}; it must return a progresskit.ProgressInfo",
                pytrace=False,
            )
        return progress

    # -- the plugin API ----------------------------------------------------------------------

    def test_plugin_describes_its_runner(self) -> None:
        pm = self.own_plugin_manager()
        runner_type = self._runner_type()
        descriptions = [d for d in pm.runner_descriptions() if d.runner_type == runner_type]
        if len(descriptions) != 1:
            pytest.fail(
                f"progresskit_describe_runner() must return one RunnerDescription("
                f"'{runner_type}', expects=...) saying which files your tracker claims; got "
                f"{pm.runner_descriptions()}",
                pytrace=False,
            )
        expects = descriptions[0].expects.strip()
        if not expects or expects == runner_type:
            pytest.fail(
                f"RunnerDescription.expects is {descriptions[0].expects!r}: name the files or "
                f"config keys your detection looks for, e.g. \"trainer_state.json file, or "
                f"checkpoint-*/ directories\"; users see it when no tracker claims a directory",
                pytrace=False,
            )
        hooks = set(pm.hooks.implemented(self.registered_name()))
        missing = {"progresskit_detect_runner", "progresskit_make_tracker"} - hooks
        if missing:
            pytest.fail(f"a tracker plugin must implement {sorted(missing)}", pytrace=False)

    def test_make_tracker_declines_other_runner_types(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        config = self.tracked_config(pm)
        answer = pm.hooks.make_tracker(_NOT_A_RUNNER_TYPE, str(run), config)
        if answer is not None:
            pytest.fail(
                f"progresskit_make_tracker(runner_type='{_NOT_A_RUNNER_TYPE}') returned "
                f"{type(answer).__name__}; return None unless runner_type is "
                f"'{self._runner_type()}', or your tracker is used for every other plugin's runs",
                pytrace=False,
            )
        tracker = self._tracker(pm, run)
        if tracker.get_runner_type() != self._runner_type():
            pytest.fail(
                f"{type(tracker).__name__}.get_runner_type() returns "
                f"{tracker.get_runner_type()!r}, expected {self._runner_type()!r}",
                pytrace=False,
            )

    # -- detection ---------------------------------------------------------------------------

    def _expect_claim(self, tmp_path: Path, kind: str) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, kind)
        runner_type = self._runner_type()
        try:
            found = detect(pm, str(run), self.tracked_config(pm), allow_config=False)
        except NoTrackerError:
            pytest.fail(
                f"progresskit_detect_runner() declined the sample {kind} {run} "
                f"(entries: {_listing(run)}). It must return '{runner_type}' for this "
                f"directory on file evidence alone (target.has_file(...)/target.has_dir(...)), "
                f"even when the files' contents are bad: detection never reads contents",
                pytrace=False,
            )
        if found != runner_type:
            pytest.fail(
                f"the sample {kind} {run} was claimed as '{found}', expected '{runner_type}'",
                pytrace=False,
            )

    def test_claims_its_valid_run(self, tmp_path: Path) -> None:
        self._expect_claim(tmp_path, "valid_run")

    def test_claims_its_corrupt_run(self, tmp_path: Path) -> None:
        self._expect_claim(tmp_path, "corrupt_run")

    def test_detection_decides_from_the_listing_alone(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        # The same listing under a path that does not exist: a plugin that opens or stats
        # files to decide can no longer claim it.
        ghost = Target(
            str(tmp_path / "not-there" / run.name),
            self.tracked_config(pm),
            list_entries(str(run)),
            use_config=False,
        )
        if self._runner_type() not in pm.hooks.detect_runner(ghost):
            pytest.fail(
                f"progresskit_detect_runner() claims the sample valid run {run} but not the "
                f"same listing under a path that does not exist: it reads the file system. "
                f"Decide from target.entries and target.config only (it runs for every "
                f"directory of a large tree)",
                pytrace=False,
            )

    def test_declines_a_foreign_directory(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        foreign = self._sample(tmp_path, "foreign_dir")
        # With the samples' config on file evidence, and with no config keys set even when
        # config may decide (as for one explicit target).
        bare = pm.schema.validate({}, "defaults")
        for config, use_config in ((self.tracked_config(pm), False), (bare, True)):
            listing = list_entries(str(foreign))
            found = pm.hooks.detect_runner(Target(str(foreign), config, listing, use_config))
            if found:
                pytest.fail(
                    f"progresskit_detect_runner() claimed the foreign directory {foreign} "
                    f"(entries: {_listing(foreign)}, use_config={use_config}) as "
                    f"{sorted(found)}. Claim only on evidence specific to your runner: a file "
                    f"name only your tool writes, not a generic one (*.json, logs/)",
                    pytrace=False,
                )

    def test_never_claims_an_empty_directory(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        empty = tmp_path / "empty"
        empty.mkdir()
        bare = pm.schema.validate({}, "defaults")
        for config, use_config, what in (
            (self.tracked_config(pm), False, "on file evidence (use_config=False)"),
            (bare, True, "with no config keys set"),
        ):
            found = pm.hooks.detect_runner(Target(str(empty), config, {}, use_config))
            if found:
                pytest.fail(
                    f"progresskit_detect_runner() claimed an empty directory {what} as "
                    f"{sorted(found)}: with no evidence, return None. Claiming without "
                    f"evidence takes every directory of a scan and makes other plugins' runs "
                    f"ambiguous",
                    pytrace=False,
                )

    def test_no_match_diagnostic_shows_what_it_expects(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        empty = tmp_path / "empty"
        empty.mkdir()
        runner_type = self._runner_type()
        expects = [d.expects for d in pm.runner_descriptions() if d.runner_type == runner_type]
        try:
            claimed = detect(pm, str(empty), pm.schema.validate({}, "defaults"))
        except NoTrackerError as exc:
            message = str(exc)
        else:
            pytest.fail(f"an empty directory was claimed as '{claimed}'; decline it", pytrace=False)
        if not expects or expects[0] not in message:
            pytest.fail(
                f"the 'no tracker claims this directory' error does not show what "
                f"'{runner_type}' expects; implement progresskit_describe_runner() returning "
                f"RunnerDescription('{runner_type}', expects=...). The error was:\n{message}",
                pytrace=False,
            )

    def test_no_other_installed_plugin_claims_its_run(self, tmp_path: Path) -> None:
        pm = self.full_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        try:
            found = detect(pm, str(run), self.tracked_config(pm), allow_config=False)
        except AmbiguousRunnerError as exc:
            pytest.fail(
                f"with every installed plugin loaded, the sample valid run is ambiguous: {exc}. "
                f"Make your detection more specific, or check that your sample holds only "
                f"your runner's files",
                pytrace=False,
            )
        except NoTrackerError as exc:
            pytest.fail(f"with every installed plugin loaded, nothing claims it: {exc}",
                        pytrace=False)
        if found != self._runner_type():
            pytest.fail(f"the valid run was claimed as '{found}'", pytrace=False)

    # -- progress ----------------------------------------------------------------------------

    def test_progress_is_within_bounds(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        tracker = self._tracker(pm, run)
        progress = self._progress(tracker, "the valid run")
        problems = []
        if progress.runner_type != self._runner_type():
            problems.append(
                f"runner_type is {progress.runner_type!r}, expected {self._runner_type()!r}"
            )
        pct = progress.progress_percentage
        if pct is not None and not 0.0 <= pct <= 100.0:
            problems.append(f"progress_percentage {progress.progress_percentage} not in [0, 100]")
        for done, total, label in (
            (progress.completed_steps, progress.total_steps, "completed_steps/total_steps"),
            (progress.items_completed, progress.items_total, "items_completed/items_total"),
            (
                None if progress.early_stopped else progress.completed_epochs,
                progress.total_epochs,
                "completed_epochs/total_epochs",
            ),
        ):
            if done is not None and total is not None and done > total:
                problems.append(f"{label} is {done}/{total}: more done than there is")
        if progress.error_message is not None:
            problems.append(
                f"the valid run reports error_message {progress.error_message!r}: a valid run "
                f"must not (is make_valid_run() writing what your tool writes?)"
            )
        if not isinstance(tracker.get_log_pattern(), str):
            problems.append("get_log_pattern() must return a glob string")
        expected = tracker.get_expected_files()
        if not isinstance(expected, list) or not all(isinstance(f, str) for f in expected):
            problems.append("get_expected_files() must return a list of file names")
        if problems:
            pytest.fail(
                f"{type(tracker).__name__} on the valid run {run}:\n  - " + "\n  - ".join(problems),
                pytrace=False,
            )

    def test_progress_round_trips_through_json(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        for kind in ("valid_run", "corrupt_run"):
            run = self._sample(tmp_path, kind)
            progress = self._progress(self._tracker(pm, run), f"the {kind}")
            try:
                text = to_json(progress)
            except (TypeError, ValueError) as exc:
                pytest.fail(
                    f"the ProgressInfo of the {kind} is not JSON: {exc}. Put only finite "
                    f"numbers (no NaN or infinity) and strings in scores, metrics and details",
                    pytrace=False,
                )
            back = structure(json.loads(text), ProgressInfo)
            if back != progress:
                changed = sorted(
                    k for k, v in unstructure(progress).items() if unstructure(back).get(k) != v
                )
                pytest.fail(
                    f"the ProgressInfo of the {kind} changes through JSON in fields {changed}: "
                    f"use str keys and plain values (str, int, float) so that what is written "
                    f"(progress.json, --json) reads back the same",
                    pytrace=False,
                )

    def test_status_of_its_run_through_the_library(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        tracking = Tracking(pm, config=self.config)
        for kind in ("valid_run", "corrupt_run"):
            run = self._sample(tmp_path, kind)
            try:
                status = tracking.status(str(run), discover_processes=False)
            except ProgresskitError as exc:
                pytest.fail(f"progresskit.status() of the {kind} {run} failed: {exc}",
                            pytrace=False)
            if (status.reason or "").startswith(f"tracker '{self._runner_type()}' failed"):
                pytest.fail(
                    f"the {kind} made the tracker raise ({status.reason}); report problems in "
                    f"ProgressInfo.error_message or warnings instead",
                    pytrace=False,
                )
            if kind == "valid_run" and status.status is Status.UNKNOWN:
                pytest.fail(f"the valid run's status is unknown: {status.reason}", pytrace=False)
            if structure(json.loads(to_json(status)), RunStatus) != status:
                pytest.fail(f"the RunStatus of the {kind} changes through JSON", pytrace=False)

    # -- bad input ---------------------------------------------------------------------------

    def test_corrupt_run_is_reported_not_raised(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "corrupt_run")
        progress = self._progress(self._tracker(pm, run), "the corrupt run")
        if not progress.error_message and not progress.warnings:
            pytest.fail(
                f"the corrupt run {run} (entries: {_listing(run)}) was read without a word: "
                f"report what is wrong (file, what was expected) in ProgressInfo.error_message "
                f"or warnings, so that users see why its progress is what it is",
                pytrace=False,
            )

    def test_half_written_files_do_not_raise(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        files = [Path(root, name) for root, _dirs, names in os.walk(run) for name in names]
        for fraction, label in ((0.5, "cut to half its size"), (0.0, "empty")):
            for path in files:
                with open(path, "r+b") as fh:
                    fh.truncate(int(path.stat().st_size * fraction))
            self._progress(
                self._tracker(pm, run), f"a copy of the valid run with every file {label}"
            )

    # -- caching -----------------------------------------------------------------------------

    def test_unchanged_run_is_served_from_the_cache(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        backdate_tree(run, SETTLED_AGE)
        tracker = self._tracker(pm, run)
        first = self._progress(tracker, "the valid run")
        calls = []
        original = tracker.calculate_progress

        def counting() -> ProgressInfo:
            calls.append(1)
            return original()

        tracker.calculate_progress = counting  # type: ignore[method-assign]
        second = tracker.get_progress()
        if calls:
            pytest.fail(
                f"{type(tracker).__name__} recomputed progress although no file changed: "
                f"fingerprint() must return the same value for unchanged files (stat keys of "
                f"what calculate_progress reads; nothing from the clock). It returned "
                f"{tracker.fingerprint()!r}",
                pytrace=False,
            )
        if second is not first:
            pytest.fail("get_progress() must return the cached ProgressInfo", pytrace=False)

    def test_cache_is_invalidated_when_the_run_changes(self, tmp_path: Path) -> None:
        pm = self.own_plugin_manager()
        run = self._sample(tmp_path, "valid_run")
        backdate_tree(run, SETTLED_AGE)
        tracker = self._tracker(pm, run)
        before = self._progress(tracker, "the valid run")
        self.mutate_run(run)
        fresh = self._progress(self._tracker(pm, run), "the mutated valid run", fresh=True)
        if comparable(fresh) == comparable(before):
            pytest.fail(
                "mutate_run() did not change the progress a new tracker computes: make it do "
                "what your tool does when the run advances (write the next checkpoint, "
                "append an event, update the status file)",
                pytrace=False,
            )
        after = self._progress(tracker, "the mutated valid run")
        if comparable(after) != comparable(fresh):
            changed = sorted(k for k, v in comparable(fresh).items() if comparable(after)[k] != v)
            pytest.fail(
                f"{type(tracker).__name__}.get_progress() served stale cached progress after "
                f"the run changed (fields {changed} differ from a fresh read): fingerprint() "
                f"must include the stat_key() of every file and directory calculate_progress() "
                f"reads. It returned {tracker.fingerprint()!r}",
                pytrace=False,
            )
