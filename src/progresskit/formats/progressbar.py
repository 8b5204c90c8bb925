"""Console progress bars in a job's log, read back: pure functions, no I/O of their own.

What a training job prints to its console (a Slurm ``slurm-%j.out``, a ``nohup`` file, a
``train.log``) usually holds a progress bar. This module parses the *text* of a log's tail
into a :class:`LogReading`: the newest bar, the epoch shown, and a Python traceback that
ends the log. The formats, with the captures they were checked on (docs/logs.md):

- **tqdm**'s default ``format_meter``: ``desc: 45%|####5     | 450/1000 [00:10<00:12,
  44.2it/s, loss=0.31]``; ``s/it`` for slow loops, ``?it/s`` before the first rate, unknown
  totals (``desc: 50it [00:01, 49.37it/s]``, Lightning's ``0/?``), ``k``/``M``/...
  ``unit_scale`` (counts with the job's ``unit_divisor``, 1000 unless told: tqdm prints
  the same ``k``/``M`` for 1024, so the text cannot say; rates always 1000), nested
  ``leave=False`` bars (drawn below the outer one and followed by a cursor-up,
  ``ESC[A``), redraws after ``\\r`` without newlines, colours. HF
  Trainer's and Lightning's TQDM bars are tqdm's (Lightning's with an ``Epoch N`` prefix).
- **rich.progress** columns written to a file: ``desc ━━━━╸━━━ 67% 0:00:01`` (the default
  columns), with a ``n/total`` column, elapsed ``•`` remaining, and a rate when present
  (Lightning's RichProgressBar: ``Epoch 2/2 ━━━ 40/40 0:00:02 • 0:00:00 18.14it/s``).
- **Keras** ``model.fit``: verbose 1 (``12/100 [==>...] - ETA: 3s - loss: 0.42``, Keras 2;
  ``17/20 ━━━━ 0s 3ms/step - loss: 2.56``, Keras 3), verbose 2 (``20/20 - 0s - 3ms/step -
  loss: 2.33``) and the ``Epoch 3/10`` lines before each epoch.

Epochs: an ``Epoch e/E`` line of its own is Keras's, counted from 1; an ``Epoch i`` or
``Epoch i/last`` in a bar's description is Lightning's, counted from 0 (its rich bar shows
``Epoch 2/2`` in the third and last of three epochs).

The input is text that may have been cut anywhere: the first, partial segment of a tail and
a bar still being written are simply not matched. Nothing here raises for what it reads.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import attrs

__all__ = [
    "DEFAULT_UNIT_DIVISOR",
    "Bar",
    "LogReading",
    "TqdmValues",
    "clean",
    "fraction_of",
    "may_hold_bar",
    "parse_appended",
    "parse_bar",
    "parse_log",
    "plain_appended",
    "settled",
]

# CSI sequences (colours, cursor moves, erase line), OSC sequences (rich's hyperlinks, ended
# by BEL or ESC \), and the few two-byte escapes terminals use.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CURSOR_UP = re.compile(r"\x1b\[\d*A")
# Keras redraws by backspacing over its previous line, then \r.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

#: tqdm's ``unit_scale`` suffixes and the power of ``unit_divisor`` each stands for.
_POWERS = {"k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7, "Y": 8}
#: tqdm's default ``unit_divisor``; rates are always shown with it (``format_sizeof(rate)``).
DEFAULT_UNIT_DIVISOR = 1000
_INF = float("inf")
_NUM = r"\d+(?:\.\d+)?[kMGTPEZY]?"
_CLOCK = r"-?(?:\d+:)?\d{1,2}:\d{2}"
# _NUM, possessive: it never gives back a digit or a scale letter, which no match needs
# where what follows it can be neither ("/", " [", "s/", a rate's unit and "/s"). Not for
# the count of a bar without a total, whose unit follows it and may start with a scale
# letter ("450k" counting unit "k").
_NUM_ALL = r"\d++(?:\.\d++)?+[kMGTPEZY]?+"
_RATE = (
    rf"\s*+(?:(?P<inv>{_NUM_ALL})s/[^\s,\]]++"
    rf"|(?P<rv>{_NUM_ALL}|\?|inf)[^\s,\]]*?/s)"
)

# Only the groups read are named: a match with fewer groups costs less, and every query of
# a growing log matches its newest redraw (benchmarks/logtail.py); for the same reason,
# possessive quantifiers wherever giving back cannot lead to a match (a quarter less).
_TQDM_TOTAL = re.compile(
    rf"^(?:(?P<desc>.*?):\s?)?(?:\s*(?P<pct>\d{{1,3}})%)?\|[^|]*+\|"
    rf" (?P<n>{_NUM_ALL})/(?P<total>{_NUM_ALL}|\?)"
    rf" \[(?P<elapsed>{_CLOCK})(?:<(?P<remaining>{_CLOCK}|\?))?,{_RATE}(?P<postfix>,.*)?\]\s*$"
)
_TQDM_NO_TOTAL = re.compile(
    rf"^(?:(?P<desc>.*?): )?(?P<n>{_NUM})[^\s\[\d][^\s\[]*"
    rf" \[(?P<elapsed>{_CLOCK}),{_RATE}(?P<postfix>,.*)?\]\s*$"
)
_RICH_BAR = "━╸╺─"
_RICH = re.compile(rf"^(?P<desc>.*?)\s*(?P<bar>[{_RICH_BAR}]+)(?P<rest>(?:\s.*)?)$")
_KERAS = re.compile(r"^\s*(?P<n>\d+)/(?P<total>\d+|Unknown)(?P<rest>\s.*)?$")
_KERAS_TIME = re.compile(r"^(?:(?P<h>\d+):)?(?:(?P<m>\d+):)?(?P<s>\d+)(?:s)?$")
_KERAS_STEP = re.compile(r"(?P<v>\d+(?:\.\d+)?)(?P<u>us|ms|s)/step")
_KERAS_METRIC = re.compile(r"^(?P<k>[A-Za-z_][\w./-]*): (?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)$")
_EPOCH_LINE = re.compile(r"^\s*Epoch (?P<e>\d+)/(?P<of>\d+)\s*$")
_EPOCH_DESC = re.compile(r"^Epoch (?P<i>\d+)(?:/(?P<last>\d+))?\b")
_MAX_EPOCHS_REACHED = re.compile(r"`max_epochs=(?P<n>\d+)` reached")
_POSTFIX_PAIR = re.compile(r"^\s*(?P<k>[^=\s][^=]*)=(?P<v>-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*$")
_EXCEPTION_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_TRACEBACK = b"Traceback (most recent call last):"
#: Lightning's postfix always carries the logger's version number: not a metric.
_NOT_METRICS = frozenset({"v_num"})


@attrs.frozen
class Bar:
    """One progress bar state as the tool printed it."""

    #: ``"tqdm"``, ``"rich"`` or ``"keras"``.
    kind: str
    #: The bar's description (tqdm's ``desc``, rich's task description); ``""`` when none.
    desc: str
    #: The count shown; ``None`` for a bar that shows none (rich's default columns: a
    #: percentage only), whose count is unknown, not zero.
    n: float | None
    total: float | None
    #: Items per second, as the tool computed it (``s/it`` inverted); ``None`` when unknown.
    rate: float | None = None
    #: The tool's own remaining-time estimate, in seconds.
    remaining: float | None = None
    elapsed: float | None = None
    #: The percentage the bar shows (rich shows no count, only this).
    percentage: float | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    #: Drawn below another bar (a nested tqdm bar, a validation bar): not the run's own.
    nested: bool = False

    @property
    def done(self) -> bool:
        """Whether the bar is full."""
        if self.total and self.n is not None:
            return self.n >= self.total
        return self.percentage is not None and self.percentage >= 100.0

    @property
    def fraction(self) -> float | None:
        """How far the bar is, in [0, 1]; ``None`` for a bar without a total or percentage."""
        return fraction_of(self.n, self.total, self.percentage)


def fraction_of(
    n: float | None, total: float | None, percentage: float | None
) -> float | None:
    """:attr:`Bar.fraction` of a bar counting ``n`` of ``total`` and showing ``percentage``."""
    if total and n is not None:
        return min(1.0, n / total)
    return None if percentage is None else min(1.0, percentage / 100.0)


#: A tqdm bar's fields, in :class:`Bar`'s order after ``kind``: ``desc``, ``n``, ``total``,
#: ``rate``, ``remaining``, ``elapsed``, ``percentage``, ``metrics`` (``Bar("tqdm",
#: *values)`` is the bar); what :func:`plain_appended` gives, without a Bar.
TqdmValues = tuple[
    str, float, float | None, float | None, float | None, float | None, float | None,
    dict[str, float],
]


@attrs.frozen
class LogReading:
    """What the tail of one log says about its run."""

    #: The newest bar at the top position: the run's own progress.
    bar: Bar | None = None
    #: The newest nested bar drawn after it and not cleared since (validation, inner loop).
    inner: Bar | None = None
    #: Epochs done and the number of epochs, when the log shows them.
    epochs_done: int | None = None
    epochs_total: int | None = None
    #: The last line of a traceback that ends the log: ``"RuntimeError: ..."``.
    failure: str | None = None
    #: The exception's name, for the cause (``KeyboardInterrupt`` is a cancel).
    failure_type: str | None = None
    #: The tool said training ended (Lightning's ``max_epochs=N`` reached).
    finished: bool = False


def clean(segment: str) -> str:
    """``segment`` without escape sequences and control characters."""
    if segment.isprintable():  # no ESC, no control character: most redraws, at C speed
        return segment
    return _CONTROL.sub("", _ANSI.sub("", segment))


def _scaled(text: str, divisor: int = DEFAULT_UNIT_DIVISOR) -> float:
    power = _POWERS.get(text[-1])
    value = float(text) if power is None else float(text[:-1]) * float(divisor) ** power
    if value == _INF:  # hundreds of digits: no tool prints that (parse_bar: not a bar)
        raise OverflowError(f"number out of range: {text[:20]}...")
    return value


def _clock(text: str | None) -> float | None:
    return None if text is None else _seconds(text)


# Memoised: consecutive redraws of a bar mostly show the same clocks, rate and postfix,
# and this parse runs on every query of a growing log (benchmarks/logtail.py).
@functools.lru_cache(maxsize=256)
def _seconds(text: str) -> float | None:
    if "?" in text or text.startswith("-"):
        return None  # not estimated yet (tqdm's "?", rich's "-:--:--")
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    if seconds == _INF:  # hours of hundreds of digits (parse_bar: not a bar)
        raise OverflowError(f"clock out of range: {text[:20]}...")
    return seconds


@functools.lru_cache(maxsize=64)
def _metric_pairs(postfix: str) -> tuple[tuple[str, float], ...]:
    # Pairs, not a dict: every Bar gets its own dict, so no caller can alter the memo.
    found: dict[str, float] = {}
    for part in postfix.lstrip(",").split(","):
        pair = _POSTFIX_PAIR.match(part)
        if pair is not None and pair["k"].strip() not in _NOT_METRICS:
            found[pair["k"].strip()] = float(pair["v"])
    return tuple(found.items())


@functools.lru_cache(maxsize=256)  # a loop's rate shows few distinct values
def _rate(inv: str | None, rv: str | None) -> float | None:
    """Items per second from a rate's groups: ``inv`` seconds per item, or ``rv`` items
    per second (``?`` or ``inf``: not measured yet, or over no time at all)."""
    if inv is not None:
        seconds = _scaled(inv)
        return 1.0 / seconds if seconds > 0 else None
    if rv is None or rv in ("?", "inf"):
        return None
    return _scaled(rv)


def _tqdm(text: str, divisor: int) -> Bar | None:
    values = _tqdm_values(text, divisor)
    return None if values is None else Bar("tqdm", *values)


@functools.lru_cache(maxsize=256)
def _meter(
    elapsed: str, remaining: str | None, inv: str | None, rv: str | None, postfix: str | None
) -> tuple[float | None, float | None, float | None, tuple[tuple[str, float], ...]]:
    """(rate, remaining, elapsed, metric pairs) of a tqdm bar's groups: one memo for what
    consecutive redraws mostly repeat (each part has its own, for when they differ)."""
    left = None if remaining is None else _seconds(remaining)
    return _rate(inv, rv), left, _seconds(elapsed), _metric_pairs(postfix or "")


def _tqdm_values(text: str, divisor: int) -> TqdmValues | None:
    # Groups fetched at once (every group is named: groups() is them in pattern order,
    # tests/test_progressbar.py), values in Bar's order: the newest redraw is parsed on every query
    # of a growing log (benchmarks/logtail.py).
    match = _TQDM_TOTAL.match(text)
    if match is not None:
        desc, pct, n, total, elapsed, remaining, inv, rv, postfix = match.groups()
        rate, left, taken, pairs = _meter(elapsed, remaining, inv, rv, postfix)
        return (
            desc.strip() if desc else "",
            _scaled(n, divisor),
            None if total == "?" else _scaled(total, divisor),
            rate,
            left,
            taken,
            None if pct is None else float(pct),
            dict(pairs),
        )
    match = _TQDM_NO_TOTAL.match(text)
    if match is not None:
        desc, n, elapsed, inv, rv, postfix = match.groups()
        rate, _left, taken, pairs = _meter(elapsed, None, inv, rv, postfix)
        desc = desc.strip() if desc else ""
        return (desc, _scaled(n, divisor), None, rate, None, taken, None, dict(pairs))
    return None


def _keras_seconds(token: str) -> float | None:
    match = _KERAS_TIME.match(token.strip())
    if match is None:
        return None
    hours, minutes = int(match["h"] or 0), int(match["m"] or 0)
    if match["h"] is not None and match["m"] is None:  # "1:02" is minutes:seconds
        hours, minutes = 0, hours
    return hours * 3600.0 + minutes * 60.0 + int(match["s"])


def _keras(text: str) -> Bar | None:
    match = _KERAS.match(text)
    if match is None:
        return None
    rest = match["rest"] or ""
    # A count alone ("1/2 done") is not a bar: Keras always adds a bar or " - " fields.
    if not ("[" in rest or "━" in rest or " - " in rest):
        return None
    n = _scaled(match["n"])
    total = None if match["total"] == "Unknown" else _scaled(match["total"])
    fields = [f.strip() for f in rest.split(" - ")]
    head = fields[0].split()
    remaining: float | None = None
    rate: float | None = None
    metrics: dict[str, float] = {}
    for field in fields[1:]:
        metric = _KERAS_METRIC.match(field)
        if field.startswith("ETA:"):
            remaining = _keras_seconds(field[4:])
        elif metric is not None:
            metrics[metric["k"]] = float(metric["v"])
    for token in head + fields[1:]:
        step = _KERAS_STEP.fullmatch(token)
        if step is not None:
            seconds = float(step["v"]) / {"us": 1e6, "ms": 1e3, "s": 1.0}[step["u"]]
            rate = 1.0 / seconds if seconds > 0 else None
    if remaining is None and total is not None and n < total:
        # Keras 3 prints the time left right after the bar while the epoch runs.
        times = [t for t in head if _KERAS_TIME.match(t) and (t.endswith("s") or ":" in t)]
        remaining = _keras_seconds(times[0]) if times else None
    return Bar("keras", "", n, total, rate=rate, remaining=remaining, metrics=metrics)


def _rich(text: str) -> Bar | None:
    match = _RICH.match(text)
    if match is None:
        return None
    n: float | None = None
    total: float | None = None
    percentage: float | None = None
    clocks: list[float | None] = []
    rate: float | None = None
    tokens = match["rest"].split()
    for token in tokens:
        if re.fullmatch(rf"{_NUM}/{_NUM}", token):
            left, right = token.split("/")
            n, total = _scaled(left), _scaled(right)
        elif re.fullmatch(r"\d{1,3}%", token):
            percentage = float(token[:-1])
        elif re.fullmatch(rf"{_CLOCK}|-:--:--", token):
            clocks.append(_clock(token))
        elif (rated := re.fullmatch(rf"(?P<rv>{_NUM})(?P<runit>[^\s/]*)/s", token)) is not None:
            rate = _scaled(rated["rv"])
    if n is None and percentage is None:
        return None  # a rule or a table border drawn with the same characters
    # One clock is the default TimeRemainingColumn; two are elapsed • remaining (Lightning).
    remaining = clocks[-1] if clocks else None
    elapsed = clocks[0] if len(clocks) > 1 else None
    if percentage is None and n is not None and total:
        percentage = 100.0 * n / total
    if percentage is not None and percentage >= 100.0:
        remaining = 0.0  # rich shows the elapsed time in that column once a task finished
    return Bar(
        "rich",
        match["desc"].strip(),
        n,
        total,
        rate=rate,
        remaining=remaining,
        elapsed=elapsed,
        percentage=percentage,
    )


def parse_bar(segment: str, divisor: int = DEFAULT_UNIT_DIVISOR) -> Bar | None:
    """The bar state ``segment`` (one redraw: the text between two ``\\r``/``\\n``) shows;
    ``divisor``: the job's tqdm ``unit_divisor``, for counts shown with ``unit_scale``."""
    if "/" not in segment and "%" not in segment and not any(c in segment for c in _RICH_BAR):
        return None  # no count, percentage or rich bar: not a bar (most log lines)
    text = clean(segment)
    try:
        bar = _tqdm(text, divisor) or _keras(text)
        if bar is None and any(c in text for c in _RICH_BAR):
            bar = _rich(text)
    except OverflowError:  # a count or clock of hundreds of digits: not a bar a tool drew
        return None
    if bar is not None and "\x1b" in segment and _moves_up_after_text(segment):
        bar = attrs.evolve(bar, nested=True)
    return bar


def _moves_up_after_text(segment: str) -> bool:
    """Whether ``segment`` moves the cursor up after drawing: tqdm draws a nested bar on a
    lower line, then goes back up. A cursor-up before the text is rich's live display
    going to the top of its region to redraw it: what follows is its top row."""
    up = _CURSOR_UP.search(segment)
    while up is not None:
        if clean(segment[: up.start()]).strip():
            return True
        up = _CURSOR_UP.search(segment, up.end())
    return False


def _starts_frame(segment: str) -> bool:
    """Whether ``segment`` begins a redraw of rich's live display (cursor-up, then text)."""
    up = _CURSOR_UP.search(segment)
    return up is not None and not clean(segment[: up.start()]).strip()


#: Lines of one redraw of rich's live display looked through for its top row.
_FRAME_LINES = 24


def _segments_from_end(data: bytes) -> Iterator[bytes]:
    """The redraws of ``data`` (split at ``\r`` and ``\n``), newest first, lazily: the
    newest bar is usually in the last few hundred bytes of a tail of many kilobytes."""
    end = len(data)
    newline = data.rfind(b"\n", 0, end)
    while end > 0:
        if newline >= end:
            newline = data.rfind(b"\n", 0, end)
        cut = max(data.rfind(b"\r", 0, end), newline)
        yield data[cut + 1 : end]
        if cut < 0:
            return
        end = cut


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _failure(data: bytes) -> tuple[str, str] | None:
    """The exception line of the newest traceback, when nothing but bars, blank lines and
    the traceback's own lines follow it."""
    start = data.rfind(_TRACEBACK)
    if start < 0:
        return None
    exception: tuple[str, str] | None = None
    for line in re.split(r"[\r\n]", _text(data[start + len(_TRACEBACK) :])):
        plain = clean(line).rstrip()
        if not plain or parse_bar(line) is not None:
            continue
        if plain.startswith((" ", "\t")) and exception is None:
            continue  # a frame, or the source line under it
        match = _EXCEPTION_LINE.match(plain)
        if exception is None and match is not None:
            exception = (plain, match["name"].rsplit(".", 1)[-1])
        else:
            return None  # the job carried on after the traceback (a caught, logged one)
    return exception


def _epoch_line(data: bytes) -> tuple[int, int] | None:
    """The newest ``Epoch e/E`` line of its own (Keras)."""
    end = len(data)
    while (found := data.rfind(b"Epoch ", 0, end)) >= 0:
        if found == 0 or data[found - 1] in b"\r\n":
            line = re.split(r"[\r\n]", _text(data[found : found + 200]), maxsplit=1)[0]
            match = _EPOCH_LINE.match(clean(line))
            if match is not None:
                return int(match["e"]), int(match["of"])
        end = found
    return None


def _newest_bars(data: bytes, divisor: int) -> tuple[Bar | None, Bar | None]:
    """The newest bar at the top position in ``data`` and the nested bar drawn after it
    and not cleared since; redraws are read from the end back to that top bar."""
    bar: Bar | None = None
    inner: Bar | None = None
    cleared = False
    segments = _segments_from_end(data)
    for raw in segments:
        segment = _text(raw)
        found = parse_bar(segment, divisor)
        if found is None:
            if not cleared and inner is None and _CURSOR_UP.search(segment):
                # tqdm clears a closed nested bar with spaces and a cursor-up
                cleared = not clean(segment).strip()
            continue
        if not found.nested:
            bar = found
            if found.kind == "rich" and not _starts_frame(segment):
                # A lower row of rich's live display (a validation bar below the epoch's,
                # under a terminal): the row its redraw began with is the top one.
                top = _frame_top(segments, divisor)
                if top is not None:
                    bar, inner = top, inner or attrs.evolve(found, nested=True)
            break
        if inner is None and not cleared:
            inner = found
    return bar, inner


def _frame_top(segments: Iterator[bytes], divisor: int) -> Bar | None:
    """The bar that the redraw holding the segments before ``segments`` began with (the
    first segment that moves the cursor up to the live region's top), when it holds one;
    ``None`` for output that is not a live display (rich writing its final state to a
    file, where every line is its own)."""
    for _line, raw in zip(range(_FRAME_LINES), segments, strict=False):
        segment = _text(raw)
        if _starts_frame(segment):
            return parse_bar(segment, divisor)
    return None


#: Rich's bar characters, as bytes (:func:`may_hold_bar`).
_RICH_BYTES = tuple(c.encode() for c in _RICH_BAR)
#: What may stand before ``s/`` in a seconds-per-item rate (``1.20s/it``, ``1.00ks/B``).
_BEFORE_SLOW_RATE = frozenset(b"0123456789kMGTPEZY")


def may_hold_bar(data: bytes) -> bool:
    """Whether ``data`` may hold a bar; ``False`` only when :func:`parse_log` of it finds
    none. Every bar :func:`parse_bar` reads shows one of: tqdm's ``|bar| n/total``, its rate
    (``it/s]``, ``B/s,`` before a postfix, ``1.20s/it``), Keras's ``ETA: `` or ``ms/step``,
    rich's bar characters. Byte searches only, at C speed: a flood of log lines is ruled
    out in a fraction of what parsing it costs."""
    if (b"|" in data and b"/" in data) or b"/s]" in data or b"/s," in data:
        return True
    if b"/step" in data or b"ETA: " in data or any(c in data for c in _RICH_BYTES):
        return True
    at = data.find(b"s/", 1)
    while at > 0:
        if data[at - 1] in _BEFORE_SLOW_RATE:
            return True
        at = data.find(b"s/", at + 2)
    return False


def settled(data: bytes) -> bool:
    """Whether ``data`` holds none of the markers that make :func:`parse_log` look past the
    newest redraws (the start of a traceback, a Keras ``Epoch e/E`` line, Lightning's end of
    training): a log tail for which it holds can be followed by :func:`parse_appended`."""
    # Spelled out, not any() over a tuple, and find(), not "in" (a third less): this runs
    # on every query of a growing log.
    return (
        data.find(b"Traceback") < 0 and data.find(b"Epoch ") < 0 and data.find(b"`max_epochs=") < 0
    )


def parse_appended(
    appended: bytes, divisor: int = DEFAULT_UNIT_DIVISOR
) -> LogReading | None:
    """What a log says after ``appended`` was written to it, when the tail it was appended
    to was :func:`settled`: the same :class:`LogReading` as :func:`parse_log` of the new
    tail, from the new bytes alone. ``appended`` must start at a redraw's start (after a
    ``\\r`` or ``\\n``). ``None`` when the new bytes alone cannot tell: they hold no bar at
    the top position, hold a marker, or show epochs (which :func:`parse_log` counts from
    lines further back)."""
    plain = plain_appended(appended, divisor)
    if plain is not None:
        return LogReading(Bar("tqdm", *plain))
    if not settled(appended):
        return None
    bar, inner = _newest_bars(appended, divisor)
    if bar is None or bar.kind == "keras":
        return None
    if bar.kind == "rich" and b"\x1b[" in appended:
        return None  # a live display: which row is the top may lie before the new bytes
    if bar.desc.startswith("Epoch ") and _EPOCH_DESC.match(bar.desc) is not None:
        return None
    return LogReading(bar, inner)


def plain_appended(
    appended: bytes, divisor: int = DEFAULT_UNIT_DIVISOR
) -> TqdmValues | None:
    """The common case of :func:`parse_appended`, without building its reading: when the
    newest redraw of ``appended`` is a plain tqdm bar (printable: no escape sequence, so
    not a nested bar; no Lightning epoch) and ``appended`` is :func:`settled`, that bar
    is the whole reading, ``LogReading(Bar("tqdm", *values))``, and these are its values.
    ``None`` otherwise (:func:`parse_appended` then reads the redraws before it)."""
    if not settled(appended):
        return None
    cut = max(appended.rfind(b"\r"), appended.rfind(b"\n"))
    newest = _text(appended[cut + 1 :])
    if not newest.isprintable():
        return None
    try:
        values = _tqdm_values(newest, divisor)
    except OverflowError:  # as parse_bar: not a bar
        return None
    if values is None:
        return None
    desc = values[0]
    if desc.startswith("Epoch ") and _EPOCH_DESC.match(desc) is not None:
        return None
    return values


def parse_log(data: bytes, divisor: int = DEFAULT_UNIT_DIVISOR) -> LogReading:
    """What the tail ``data`` of a log says: its newest bars, epoch and ending traceback.

    Redraws are read from the end back to the newest bar at the top position; the rest is
    only searched (as bytes) for the few markers below, and only what they point at is
    decoded, so the cost hardly depends on how long the tail is. ``divisor``: the job's
    tqdm ``unit_divisor`` (:func:`parse_bar`).
    """
    bar, inner = _newest_bars(data, divisor)
    # Each marker is looked for only where it can matter: a search of the whole tail costs
    # about as much as reading it (benchmarks/logtail.py).
    reached = None
    lightning = bar is not None and _EPOCH_DESC.match(bar.desc) is not None
    marker = data.rfind(b"`max_epochs=") if lightning else -1
    if marker >= 0:
        reached = _MAX_EPOCHS_REACHED.match(_text(data[marker : marker + 40]))
    keras = bar is not None and bar.kind == "keras"
    epochs_done, epochs_total = _epochs(bar, _epoch_line(data) if keras else None, reached)
    failure = _failure(data)
    return LogReading(
        bar=bar,
        inner=inner,
        epochs_done=epochs_done,
        epochs_total=epochs_total,
        failure=None if failure is None else failure[0],
        failure_type=None if failure is None else failure[1],
        finished=reached is not None,
    )


def _epochs(
    bar: Bar | None, epoch_line: tuple[int, int] | None, reached: re.Match[str] | None
) -> tuple[int | None, int | None]:
    if epoch_line is not None:  # Keras: "Epoch 3/10" before the third epoch's bar
        current, of = epoch_line
        done = current if bar is not None and bar.kind == "keras" and bar.done else current - 1
        return max(0, done), of
    described = None if bar is None else _EPOCH_DESC.match(bar.desc)
    if described is None or bar is None:
        return None, None
    index = int(described["i"])  # Lightning counts epochs from 0
    total: int | None = None if described["last"] is None else int(described["last"]) + 1
    if reached is not None:
        total = int(reached["n"])
    return index + (1 if bar.done else 0), total
