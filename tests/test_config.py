from __future__ import annotations

from pathlib import Path

import pytest

from progresskit import ConfigError, Tracking, get_plugin_manager
from progresskit.plugin.config import find_config_file, load_yaml
from progresskit.plugin.sink import build_sinks


@pytest.fixture(scope="module")
def pm():  # type: ignore[no-untyped-def]
    return get_plugin_manager()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epoch": 3}, "unknown key 'epoch' (known keys: "),
        ({"epochs": "ten"}, "key 'epochs' expects integer or null, got str 'ten'"),
        ({"epochs": True}, "key 'epochs' expects integer or null, got bool"),
        ({"epochs": -1}, "key 'epochs': must be >= 0"),
        ({"sleep_time": 0}, "key 'sleep_time': must be > 0 seconds"),
        ({"metric_direction": "up"}, "must be 'max' or 'min'"),
        ({"early_stopping": {"patience": 0}}, "'patience' must be an integer >= 1"),
        ({"early_stopping": {"patience": 2, "mode": "max"}}, "unknown keys ['mode']"),
        ({"expected_files": []}, "expects a non-empty list of file names"),
        ({"runner": {"klass": "X"}}, "expects a mapping with a string 'class'"),
    ],
)
def test_invalid_values_name_the_source_key_and_expectation(pm, values, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        pm.schema.validate(values, "/runs/progresskit.yaml")
    assert str(info.value).startswith("/runs/progresskit.yaml: ")
    assert message in str(info.value)


def test_defaults_are_filled(pm) -> None:  # type: ignore[no-untyped-def]
    values = pm.schema.validate({"epochs": 5}, "x")
    assert values["epochs"] == 5
    assert values["sleep_time"] == 86400
    assert values["outdated_days"] == 30


def test_yaml_is_read_with_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "progresskit.yaml"
    path.write_text("epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "progresskit.yaml"
    path.write_text("epochs: 3\nsinks: [\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(path) in str(info.value) and "line" in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "progresskit.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(path)


def test_nearest_config_file_is_found_in_parents(tmp_path: Path) -> None:
    (tmp_path / "progresskit.yaml").write_text("epochs: 3\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config_file(deep) == tmp_path / "progresskit.yaml"
    assert Tracking().config_for(str(deep))["epochs"] == 3


def test_config_file_change_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "progresskit.yaml"
    path.write_text("epochs: 3\n")
    session = Tracking()
    assert session.config_for(str(tmp_path))["epochs"] == 3
    path.write_text("epochs: 12\n")
    assert session.config_for(str(tmp_path))["epochs"] == 12


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"type": "carrier_pigeon"}], "sinks[0]: unknown sink type 'carrier_pigeon' (known: "),
        ([{"path": "x"}], "sinks[0]: expected a mapping with a 'type' key"),
        ([{"type": "stdout", "format": "xml"}], "key 'format': must be one of table, jsonl"),
        (
            [{"type": "stdout"}, {"type": "json_file", "path": "/tmp/same.json"}],
            "sinks[1]: key 'path': must contain {work_dir} or {name}",
        ),
        ([{"type": "json_file", "colour": "red"}], "sinks[0]: unknown key 'colour'"),
    ],
)
def test_bad_sink_entries(pm, entries, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        build_sinks(entries, pm.sink_types, "p.yaml")
    assert message in str(info.value)
