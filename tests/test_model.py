from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from progresskit import (
    FormatError,
    ProcessInfo,
    ProgressInfo,
    RunStatus,
    Status,
    load_progress_file,
    structure,
    unstructure,
)
from progresskit.formats.jsonio import to_json
from progresskit.model.core import prechecked
from progresskit.testing import strategies as pks

progress_infos = pks.progress_infos()


@given(progress_infos)
def test_progress_info_round_trips_through_json(info: ProgressInfo) -> None:
    data = json.loads(to_json(info))
    assert structure(data, ProgressInfo) == info


@given(progress_infos)
def test_progress_is_always_within_bounds(info: ProgressInfo) -> None:
    # Unknown progress is None throughout (issue 15: never 0.0); known is within bounds.
    if info.progress_percentage is None:
        assert info.fraction is None and not info.at_full
    else:
        assert 0.0 <= info.progress_percentage <= 100.0
        assert info.fraction is not None and 0.0 <= info.fraction <= 1.0
        assert info.at_full == (info.progress_percentage >= 100.0)


def test_what_a_tracker_does_not_say_is_null_not_zero() -> None:
    # A tracker that says nothing of epochs or of a percentage never reports 0 of them.
    info = ProgressInfo(runner_type="anything", completed_steps=3)
    assert info.completed_epochs is None and info.progress_percentage is None


def test_unknown_progress_and_epochs_are_null_in_json() -> None:
    info = ProgressInfo(progress_percentage=None, completed_epochs=None, runner_type="brush")
    data = json.loads(to_json(info))
    assert data["progress_percentage"] is None and data["completed_epochs"] is None
    assert structure(data, ProgressInfo) == info


@given(progress_infos, pks.statuses())
def test_run_status_round_trips(info: ProgressInfo, status: Status) -> None:
    run = RunStatus(
        "cfg", "/w", info, status, ProcessInfo(pid=3, user="u", cmd="python t.py"), "why", 12.5
    )
    assert structure(json.loads(to_json(run)), RunStatus) == run


@pytest.mark.parametrize("bad", [-0.1, 100.5, float("nan"), float("inf")])
def test_percentage_outside_bounds_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="progress_percentage"):
        ProgressInfo(progress_percentage=bad)


def test_models_are_frozen_and_slotted() -> None:
    info = ProgressInfo()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.completed_epochs = 3  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


def test_old_progress_json_with_four_fields_loads(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(
        json.dumps(
            {
                "completed_epochs": 5,
                "progress_percentage": 50.0,
                "early_stopped": False,
                "early_stopped_at_epoch": None,
            }
        )
    )
    info = load_progress_file(path)
    assert info.completed_epochs == 5
    assert info.progress_percentage == 50.0
    assert info.runner_type == "trainer"
    assert info.warnings == ()


def test_seed_progress_json_with_new_fields_and_unknown_keys_loads(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    path.write_text(
        json.dumps(
            {
                "completed_epochs": 5,
                "progress_percentage": 50.0,
                "early_stopped": False,
                "early_stopped_at_epoch": None,
                "runner_type": "trainer",
                "total_epochs": 10,
                "start_time": 1642680000.0,
                "last_update_time": 1642680300.0,
                "best_score": {"accuracy": 0.95, "loss": 0.05},
                "latest_score": {"accuracy": 0.93, "loss": 0.07},
                "error_message": None,
                "warnings": None,
                "a_field_from_the_future": {"x": 1},
            }
        )
    )
    info = load_progress_file(path)
    assert info.best_score == {"accuracy": 0.95, "loss": 0.05}
    assert info.total_epochs == 10
    assert info.warnings == ()


def test_new_files_carry_every_field() -> None:
    data = ProgressInfo(completed_epochs=2, progress_percentage=20).to_dict()
    for field in (
        "completed_epochs",
        "progress_percentage",
        "early_stopped",
        "early_stopped_at_epoch",
        "runner_type",
        "total_epochs",
        "start_time",
        "last_update_time",
        "best_score",
        "latest_score",
        "error_message",
        "warnings",
        "completed_steps",
        "current_stage",
        "eta_seconds",
        "elapsed_seconds",
        "source_status",
        "metrics",
    ):
        assert field in data
    assert data["warnings"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"completed_epochs": 1, "progress_percentage": 400}', "progress_percentage"),
        ('{"completed_epochs": "many"}', "completed_epochs"),
    ],
)
def test_bad_progress_json_is_a_format_error_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "progress.json"
    path.write_text(content)
    with pytest.raises(FormatError, match=message) as info:
        load_progress_file(path)
    assert str(path) in str(info.value)


def test_legacy_vocabulary() -> None:
    assert Status.STUCK.legacy is Status.STUCK
    assert Status.CRASHED.legacy is Status.FAILED
    assert Status.CANCELLED.legacy is Status.FAILED
    assert Status.PENDING.legacy is Status.RUNNING
    legacy = {s.legacy.value for s in Status}
    assert legacy == {"running", "finished", "stuck", "failed", "outdated"}


def test_unstructure_uses_plain_values() -> None:
    run = RunStatus("c", "w", ProgressInfo(reported_status=Status.FAILED), Status.FAILED)
    data = unstructure(run)
    assert data["status"] == "failed"
    assert data["progress"]["reported_status"] == "failed"


# -- prechecked: the constructor's answer without its converters (the log tracker's path) --


@given(progress_infos)
def test_prechecked_builds_what_the_constructor_builds(info: ProgressInfo) -> None:
    # Every field, given as the converters left it: the same record, field for field.
    fields = attrs.asdict(info, recurse=False)
    built = prechecked(**fields)
    assert built == info and type(built) is ProgressInfo
    assert [getattr(built, f.name) for f in attrs.fields(ProgressInfo)] == list(fields.values())


def test_prechecked_defaults_are_the_constructors_with_fresh_containers() -> None:
    assert prechecked() == ProgressInfo()
    one, two = prechecked(), prechecked()
    assert one.metrics is not two.metrics and one.details is not two.details
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        one.runner_type = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("progress_percentage", 250.0),
        ("stage_progress_percentage", float("nan")),
        ("completed_steps", -1),
        ("elapsed_seconds", float("inf")),
        ("items_total", -3),
    ],
)
def test_prechecked_still_runs_the_validators(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field) as built:
        prechecked(**{field: bad})
    with pytest.raises(ValueError) as constructed:
        ProgressInfo(**{field: bad})
    assert str(built.value) == str(constructed.value)


_VALIDATED = [f.name for f in attrs.fields(ProgressInfo) if f.validator is not None]


@given(
    field=st.sampled_from(_VALIDATED),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**400), max_value=10**400),
    ),
)
def test_prechecked_refuses_exactly_what_the_constructor_refuses(
    field: str, value: float
) -> None:
    # Its inlined acceptance tests (model/core.py _ACCEPTS) against the validators they
    # stand in for: any number, NaN, infinities and huge integers included, given to
    # prechecked as the field's converter leaves it (its callers' promise).
    converter = attrs.fields_dict(ProgressInfo)[field].converter
    try:
        given_value = value if converter is None else converter(value)
    except OverflowError:  # float() of a huge int: the constructor refuses it there
        return
    try:
        ProgressInfo(**{field: value})
    except ValueError as exc:
        with pytest.raises(ValueError) as built:
            prechecked(**{field: given_value})
        assert str(built.value) == str(exc)
    else:
        assert getattr(prechecked(**{field: given_value}), field) == given_value


def test_prechecked_refuses_unknown_fields() -> None:
    with pytest.raises(TypeError, match="bogus"):
        prechecked(bogus=1)
