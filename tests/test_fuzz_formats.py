"""Fuzzing every file format a tracker reads (issue 16): whatever a run's files hold, a scan
answers with rows, never a traceback, in bounded time and memory.

Each example starts from a document written by the format's real writer
(tests/helpers/hostile.py) and breaks it: a field set to a hostile value (a number no
float holds, NaN, a deeply nested array, a string of control characters, the wrong type),
the text cut short, random bytes, a byte-order mark. Bounded: a fixed number of examples
per format and a per-example deadline; memory is measured with tracemalloc.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.hostile import FORMATS, lease_text, trainer_run
from progresskit.engine.session import Tracking
from progresskit.errors import ConfigError
from progresskit.plugin.config import load_yaml
from progresskit.testing import plugin_manager

#: Peak Python memory one scan of one broken run may take.
MEMORY_LIMIT = 64 << 20
FUZZ = settings(
    max_examples=30,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure is reproducible
)

#: JSON texts no ``json.dumps`` writes but a hostile or broken writer may.
RAW_VALUES = st.sampled_from([
    "1" + "0" * 400, "-" + "9" * 5000, "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
    "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, '"\\u0000\\u001b[2J"',
    '"\\ud800"', "1.5e-400", "true", "null", "[]", "{}", '"9999-12-31T23:59:59Z"',
    '"0000-00-00T00:00:00Z"', '"+275760-09-13T00:00:00Z"', "-1", "0", "2147483648",
])
PLAIN_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=10,
)


def _with_raw(document: Any, key: str, raw: str) -> str:
    """``document`` as JSON text with ``key``'s value replaced by the raw JSON ``raw``."""
    marker = "__fuzz_marker__"
    text = json.dumps({**document, key: marker})
    return text.replace(json.dumps(marker), raw, 1)


@st.composite
def broken(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` (a JSON document, or JSON lines) broken in one of several ways."""
    how = draw(st.sampled_from(["field-raw", "field-plain", "truncate", "bytes", "bom", "lines"]))
    if how == "truncate":
        return original[: draw(st.integers(0, max(0, len(original) - 1)))]
    if how == "bytes":
        return draw(st.binary(max_size=512))
    if how == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff\x00"])) + original
    lines = original.splitlines(keepends=True)
    if how == "lines" or len(lines) > 1:  # JSON lines: break one line, keep the others
        index = draw(st.integers(0, len(lines) - 1))
        try:
            event = json.loads(lines[index])
        except ValueError:
            event = {}
        key = draw(st.sampled_from(sorted(event) or ["x"]))
        raw = draw(RAW_VALUES) if draw(st.booleans()) else json.dumps(draw(PLAIN_VALUES))
        lines[index] = _with_raw(event, key, raw).encode() + (
            b"\n" if draw(st.booleans()) else b""
        )
        return b"".join(lines)
    document = json.loads(original)
    if not isinstance(document, dict):
        return original
    key = draw(st.sampled_from(sorted(document)))
    if how == "field-raw":
        return _with_raw(document, key, draw(RAW_VALUES)).encode()
    return _with_raw(document, key, json.dumps(draw(PLAIN_VALUES))).encode()


def _originals() -> dict[str, tuple[Callable[[Path], Path], str, bytes]]:
    made = {}
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-originals-"))
    try:
        for name, (make, where) in FORMATS.items():
            run = make(scratch / name)
            made[name] = (make, where, (run / where).read_bytes())
    finally:
        shutil.rmtree(scratch)
    return made


ORIGINALS = _originals()


def _scan_once(make: Callable[[Path], Path], where: str, content: bytes) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        run = make(scratch / "runs" / "run")
        (run / where).write_bytes(content)
        tracemalloc.start()
        try:
            result = Tracking(plugin_manager()).scan(str(scratch / "runs"), processes={})
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(result) + len(result.unrecognised) >= 1  # the run is reported, not lost
        for row in result:
            # A tracker's unhandled exception is caught as a row "tracker 'x' failed: ...":
            # no traceback, but a bug that hides the run's state all the same.
            assert " failed: " not in (row.reason or ""), row.reason
        assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB to scan one broken run"
    finally:
        shutil.rmtree(scratch)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_a_broken_file_of_any_format_is_a_row_not_a_traceback(name: str) -> None:
    make, where, original = ORIGINALS[name]

    @FUZZ
    @given(content=broken(original))
    def check(content: bytes) -> None:
        _scan_once(make, where, content)

    check()


@pytest.mark.slow
@FUZZ
@given(content=broken(lease_text().encode()))
def test_a_broken_lease_is_a_row_not_a_traceback(content: bytes) -> None:
    _scan_once(trainer_run, ".progresskit-lease.json", content)


YAML_PIECES = st.sampled_from([
    "sleep_time: ", "runner: ", "sinks: ", "scan_max_depth: ", "&a ", "*a ", "[", "]", "{",
    "}", ", ", "\n", "  ", "- ", "!!python/object:os.system ", "!!binary ", "? ", ": ",
    "9" * 5000, "1e400", ".nan", "~", "'", '"', "\t", "\x00", "\ufeff", "%YAML 1.1\n", "---\n",
])


@pytest.mark.slow
@FUZZ
@given(pieces=st.lists(YAML_PIECES, max_size=40), tail=st.binary(max_size=16))
def test_a_broken_config_is_a_config_error_or_a_mapping(pieces: list[str], tail: bytes) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-yaml-"))
    try:
        path = scratch / "progresskit.yaml"
        path.write_bytes("".join(pieces).encode("utf-8", "surrogatepass") + tail)
        try:
            values = load_yaml(path)
        except ConfigError as exc:
            assert str(path) in str(exc) and len(str(exc)) < 2000
        else:
            assert isinstance(values, dict)
    finally:
        shutil.rmtree(scratch)
