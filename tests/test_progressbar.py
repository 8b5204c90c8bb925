"""Progress bars read back from console text (formats/progressbar.py).

Every input is what the real tools wrote: tqdm's own ``format_meter`` (hypothesis picks its
arguments), tqdm and rich run in subprocesses to files and to a pty, and the HF Trainer,
Lightning and Keras captures in tests/data/console_logs (README there).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from progresskit.formats.progressbar import may_hold_bar, parse_bar, parse_log

DATA = Path(__file__).parent / "data" / "console_logs"


def _data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _close(parsed: float, told: float) -> bool:
    """tqdm shows 3 significant digits with unit_scale, 2 decimals for rates."""
    return abs(parsed - told) <= max(0.006, 0.0051 * abs(told))


# -- tqdm's own formatter, with the arguments hypothesis picks ---------------------------------

descs = st.one_of(
    st.just(""),
    st.text(
        st.characters(whitelist_categories=("L", "N"), whitelist_characters=" _-."),
        min_size=1,
        max_size=20,
    ).filter(lambda d: d.strip() == d),  # the parser reports it without outer spaces
)
postfixes = st.dictionaries(
    st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).map(lambda v: round(v, 4)),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=10**9),
    extra=st.integers(min_value=0, max_value=10**9),
    known_total=st.booleans(),
    elapsed=st.floats(min_value=0, max_value=10**6),
    rate=st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e7)),
    unit_scale=st.booleans(),
    unit_divisor=st.sampled_from([1000, 1024]),
    unit=st.sampled_from(["it", "B", "img", "tok"]),
    desc=descs,
    postfix=postfixes,
)
def test_tqdm_format_meter_round_trips(
    n: int,
    extra: int,
    known_total: bool,
    elapsed: float,
    rate: float | None,
    unit_scale: bool,
    unit_divisor: int,
    unit: str,
    desc: str,
    postfix: dict[str, float],
) -> None:
    total = n + extra if known_total and n + extra > 0 else None
    line = tqdm.format_meter(
        n,
        total,  # type: ignore[arg-type]  # the stub says float; None is tqdm's unknown total
        elapsed,
        prefix=desc,
        unit=unit,
        unit_scale=unit_scale,
        unit_divisor=unit_divisor,
        rate=rate,
        postfix=", ".join(f"{k}={v}" for k, v in postfix.items()) or None,
    )
    # tqdm prints the same "k"/"M" for both divisors ("1.00k" is 1024 items with 1024):
    # the parser is told the job's divisor (log_unit_divisor), as tqdm was.
    bar = parse_bar("\r" + line, unit_divisor)
    assert bar is not None, line
    assert may_hold_bar(line.encode()), line  # the look-back's filter never skips a bar
    assert bar.desc == desc, line
    assert (_close(bar.n, n) if unit_scale else bar.n == n), line
    if total is None:
        assert bar.total is None, line
    else:
        assert bar.total is not None, line
        assert _close(bar.total, total) if unit_scale else bar.total == total, line
    # what tqdm computes and shows: "?" for no rate (or none yet), "inf" over no time
    told = rate if rate is not None else (n / elapsed if elapsed else None)
    if not told or told == float("inf"):
        assert bar.rate is None, line
    elif told < 1:  # shown as seconds per item, with 2 decimals: compare those
        assert bar.rate is not None and _close(1 / bar.rate, 1 / told), line
    else:
        assert bar.rate is not None and _close(bar.rate, told), line
    assert bar.metrics == {k: float(str(v)) for k, v in postfix.items()}, line


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.log")))
def test_every_bar_of_the_real_captures_passes_the_look_back_filter(name: str) -> None:
    redraws = re.split(rb"[\r\n]", _data(name))
    bars = [r for r in redraws if parse_bar(r.decode("utf-8", errors="replace")) is not None]
    assert bars, name
    assert all(may_hold_bar(r) for r in bars), [r for r in bars if not may_hold_bar(r)][:3]
    assert not may_hold_bar(b"2026-12-02 05:00:00 INFO data: shard 12/51 of /data/x.tar, 3%\n")


def test_unit_divisor_1024_counts_as_tqdm_was_told() -> None:
    # What real tqdm prints for 1 KiB of 4 KiB with unit_divisor=1024: no "Ki" suffix, and
    # "0.98k" for 1000 B (below one unit of 1024, which a divisor of 1000 never shows).
    line = tqdm.format_meter(1024, 4096, 10, unit="B", unit_scale=True, unit_divisor=1024)
    assert "1.00k/4.00k" in line
    bar = parse_bar("\r" + line, 1024)
    assert bar is not None and (bar.n, bar.total) == (1024, 4096)
    assert parse_bar("\r" + line) == attrs.evolve(bar, n=1000, total=4000)  # the default
    line = tqdm.format_meter(1000, 2048, 10, unit="B", unit_scale=True, unit_divisor=1024)
    bar = parse_bar("\r" + line, 1024)
    assert "0.98k/2.00k" in line and bar is not None and bar.total == 2048
    assert bar.rate == 100.0  # rates are always shown with 1000: "100B/s"


def test_the_issues_example_line() -> None:
    bar = parse_bar("desc:  45%|####5     | 450/1000 [00:10<00:12, 44.2it/s, loss=0.31]")
    assert bar is not None
    assert (bar.desc, bar.n, bar.total, bar.rate, bar.remaining) == ("desc", 450, 1000, 44.2, 12)
    assert bar.metrics == {"loss": 0.31}


def test_slow_loops_show_seconds_per_item() -> None:
    bar = parse_bar(tqdm.format_meter(3, 10, 10.0, rate=0.25))
    assert bar is not None and bar.rate == pytest.approx(0.25)
    assert bar.remaining == 28


def test_a_line_that_is_not_a_bar_is_none() -> None:
    for text in ("epoch 3 done", "1/2 of the data loaded", "loss=0.3", "", "Total: 5 | 3 |"):
        assert parse_bar(text) is None, text


HUGE = "9" * 400  # beyond a float: no tool counts or times that far


@pytest.mark.parametrize(
    "line",
    [
        f"train:  50%|#####     | {HUGE}/1000 [00:01<00:01, 1.00it/s]",
        f"train:  50%|#####     | 5/{HUGE} [00:01<00:01, 1.00it/s]",
        f"train:  50%|#####     | 5/10 [{HUGE}:00:01<00:01, 1.00it/s]",
        f"train:  50%|#####     | 5/10 [{'9' * 305}:00:01<00:01, 1.00it/s]",  # x 3600: inf
        f"train:  50%|#####     | 5/10 [00:01<00:01, {HUGE}it/s]",
        f"train: {HUGE}it [00:01, 1.00it/s]",
        f"{HUGE}/100 [==>...........................] - ETA: 3s - loss: 0.42",
        f"12/100 [==>...........................] - ETA: {HUGE}:00:03 - loss: 0.42",
        f"train ━━━━━━━━━━━━━━━━━━━━━━ {HUGE}/40 0:00:02 • 0:00:00",
    ],
)
def test_numbers_beyond_a_float_are_not_a_bar(line: str) -> None:
    # Counts the model could not hold (int(inf) raises) or clocks it would refuse: the line
    # is not a bar, and the tail is read on, as for any other line (no error raised).
    assert parse_bar(line) is None
    good = tqdm.format_meter(450, 1000, 10.0, prefix="train")
    reading = parse_log(("\r" + good + "\r" + line).encode())
    assert reading.bar is not None and reading.bar.n == 450


# -- the real tools, run ---------------------------------------------------------------------

TQDM_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from tqdm import tqdm
    kind = sys.argv[1]
    if kind == "nested":
        for e in tqdm(range(3), desc="epochs", mininterval=0):
            for _ in tqdm(range(20), desc=f"epoch {e}", leave=False, mininterval=0):
                pass
            if e == 1:
                for _ in tqdm(range(20), desc="inner", leave=False, mininterval=0):
                    if _ == 7:  # die as if killed: no bar is closed
                        sys.stderr.flush(); import os; os._exit(0)
    elif kind == "postfix":
        bar = tqdm(total=1000, desc="train", mininterval=0, colour="green")
        for i in range(450):
            bar.set_postfix(loss=0.31, lr=1e-3, refresh=False)
            bar.update(1)
        bar.refresh(); sys.stderr.flush()
        if sys.stdin.isatty():  # on a pty, stay until the reader has the bar
            sys.stdin.readline()
        import os; os._exit(0)
    elif kind == "unknown":
        for _ in tqdm(iter(range(2500)), desc="stream", unit="B", unit_scale=True, mininterval=0):
            pass
    elif kind == "survived":
        import traceback
        for i in tqdm(range(10), desc="train", mininterval=0):
            if i == 3:
                try:
                    {}["a"]
                except KeyError:
                    traceback.print_exc()
                    print("retrying", file=sys.stderr)
    elif kind == "crash":
        for i in tqdm(range(100), desc="train", mininterval=0):
            if i == 40:
                raise ValueError("loss is NaN at step 40")
    """
)


def _run_to_file(tmp_path: Path, kind: str) -> bytes:
    log = tmp_path / f"{kind}.log"
    with open(log, "wb") as fh:
        subprocess.run(
            [sys.executable, "-c", TQDM_SCRIPT, kind],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    return log.read_bytes()


def test_real_tqdm_postfix_and_colour(tmp_path: Path) -> None:
    reading = parse_log(_run_to_file(tmp_path, "postfix"))
    assert reading.bar is not None
    assert (reading.bar.desc, reading.bar.n, reading.bar.total) == ("train", 450, 1000)
    assert reading.bar.metrics == {"loss": 0.31, "lr": 0.001}


def test_real_tqdm_nested_leave_false(tmp_path: Path) -> None:
    reading = parse_log(_run_to_file(tmp_path, "nested"))
    # killed inside the inner bar of the second epoch
    assert reading.bar is not None and reading.bar.desc == "epochs"
    assert (reading.bar.n, reading.bar.total) == (1, 3)
    assert reading.inner is not None and reading.inner.desc == "inner"
    assert reading.inner.total == 20


def test_real_tqdm_unknown_total_scaled(tmp_path: Path) -> None:
    reading = parse_log(_run_to_file(tmp_path, "unknown"))
    assert reading.bar is not None
    assert reading.bar.total is None and reading.bar.n == pytest.approx(2500, rel=0.005)


def test_real_traceback_is_the_failure(tmp_path: Path) -> None:
    reading = parse_log(_run_to_file(tmp_path, "crash"))
    assert reading.failure == "ValueError: loss is NaN at step 40"
    assert reading.failure_type == "ValueError"
    assert reading.bar is not None and reading.bar.n == 40


def test_a_traceback_the_job_survived_is_not_a_failure(tmp_path: Path) -> None:
    reading = parse_log(_run_to_file(tmp_path, "survived"))
    assert reading.failure is None
    assert reading.bar is not None and reading.bar.n == 10


def test_real_tqdm_on_a_pty() -> None:
    controller, terminal = pty.openpty()
    # a 0x0 terminal gets no bar text from tqdm at all (../shared/formats/console/pty)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", TQDM_SCRIPT, "postfix"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    text = ""
    try:
        deadline = time.monotonic() + 60
        while "450/1000" not in text:
            ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
            assert ready, f"no bar on the pty within 60 s: {text[-300:]!r}"
            chunk = os.read(controller, 65536)
            text += chunk.decode(errors="replace")
        os.write(controller, b"\n")  # let the child go
        proc.wait(timeout=60)
    finally:
        os.close(controller)
        proc.kill()
        proc.wait()
    assert "\x1b[" in text  # the colour, as a terminal gets it
    reading = parse_log(text.encode())
    assert reading.bar is not None and (reading.bar.n, reading.bar.total) == (450, 1000)
    assert reading.bar.metrics == {"loss": 0.31, "lr": 0.001}


RICH_SCRIPT = textwrap.dedent(
    """
    import sys
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)
    with open(sys.argv[1], "w") as f:
        console = Console(file=f, force_terminal=True, width=100)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        progress = Progress(*columns, console=console, auto_refresh=False)
        progress.start()
        task = progress.add_task("train", total=200)
        for _ in range(120):
            progress.advance(task)
            progress.refresh()
        f.flush()
        import os; os._exit(0)
    """
)


def test_real_rich_progress_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "rich.log"
    subprocess.run([sys.executable, "-c", RICH_SCRIPT, str(log)], check=True, timeout=60)
    reading = parse_log(log.read_bytes())
    assert reading.bar is not None and reading.bar.kind == "rich"
    assert (reading.bar.desc, reading.bar.n, reading.bar.total) == ("train", 120, 200)


# -- captured framework logs -------------------------------------------------------------------


def test_hf_trainer_killed_mid_bar() -> None:
    reading = parse_log(_data("hf_trainer_b_killed.log"))
    assert reading.bar is not None
    assert (reading.bar.n, reading.bar.total, reading.bar.rate) == (59, 96, 23.13)
    assert reading.failure is None


def test_hf_trainer_eval_bar_is_nested_while_it_runs() -> None:
    text = _data("hf_trainer_c_tqdm.log")
    marker = b"| 0/4 [00:00<?, ?it/s]\x1b[A"
    cut = text.index(marker) + len(marker)  # the first evaluation has begun
    reading = parse_log(text[:cut])
    assert reading.bar is not None and reading.bar.total == 96
    assert reading.inner is not None and reading.inner.total == 4


def test_lightning_crash_traceback_followed_by_a_bar() -> None:
    reading = parse_log(_data("lightning_b_crashed.log"))
    assert reading.failure == "RuntimeError: deliberate failure at epoch 1 batch 20"
    assert reading.bar is not None and reading.bar.desc == "Epoch 1"
    assert (reading.bar.n, reading.bar.total) == (20, 40)
    assert reading.epochs_done == 1 and reading.epochs_total is None
    assert reading.bar.metrics == {
        "train_loss_step": 2.26, "val_loss": 2.33, "train_loss_epoch": 2.32
    }


def test_lightning_completed_and_killed() -> None:
    done = parse_log(_data("lightning_a_completed.log"))
    assert done.finished and (done.epochs_done, done.epochs_total) == (3, 3)
    killed = parse_log(_data("lightning_c_killed.log"))
    assert not killed.finished and killed.bar is not None
    assert (killed.bar.n, killed.bar.total, killed.epochs_done) == (32, 40, 1)


def test_lightning_rich_bar() -> None:
    reading = parse_log(_data("lightning_d_rich.log"))
    assert reading.bar is not None and reading.bar.kind == "rich"
    assert (reading.bar.desc, reading.bar.n, reading.bar.total) == ("Epoch 2/2", 40, 40)
    assert (reading.epochs_done, reading.epochs_total) == (3, 3)


@pytest.mark.parametrize(
    "name", ["keras_fit_verbose1.log", "keras_fit_verbose1.typescript", "keras_fit_verbose2.log"]
)
def test_keras_fit(name: str) -> None:
    reading = parse_log(_data(name))
    assert reading.bar is not None and reading.bar.kind == "keras"
    assert (reading.bar.n, reading.bar.total) == (20, 20)
    assert (reading.epochs_done, reading.epochs_total) == (3, 3)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(reading.bar.metrics)


def test_keras_mid_epoch_has_its_eta_and_epoch() -> None:
    text = _data("keras_fit_verbose1.log")
    cut = text.index(b"Epoch 2/3") + 200
    reading = parse_log(text[:cut])
    assert reading.bar is not None and reading.bar.n < 20
    assert (reading.epochs_done, reading.epochs_total) == (1, 3)
    assert reading.bar.remaining is not None


def test_keras_2_line_from_the_issue() -> None:
    bar = parse_bar("12/100 [==>...........................] - ETA: 3s - loss: 0.42")
    assert bar is not None
    assert (bar.n, bar.total, bar.remaining, bar.metrics) == (12, 100, 3, {"loss": 0.42})


def test_the_tqdm_patterns_groups_are_the_named_ones_in_the_order_they_are_unpacked() -> None:
    # _tqdm_values unpacks match.groups(): every group must be named, in this order.
    from progresskit.formats import progressbar

    total, no_total = progressbar._TQDM_TOTAL, progressbar._TQDM_NO_TOTAL
    assert list(total.groupindex) == [
        "desc", "pct", "n", "total", "elapsed", "remaining", "inv", "rv", "postfix"
    ]
    assert total.groups == len(total.groupindex)
    assert list(no_total.groupindex) == ["desc", "n", "elapsed", "inv", "rv", "postfix"]
    assert no_total.groups == len(no_total.groupindex)
