"""Which changes become messages: a ``notify`` sink's ``rules``, and the pace per run.

A change notifies when its run *enters* a status a rule names (``changed`` with another
status before; ``new`` only with ``notify_new``), for a run one of the rule's globs matches.
The first matching rule decides. After a message about a run, that rule says nothing more
about the run for ``every_minutes``: what happens meanwhile is held, and the newest held
change goes out when the time is up (with how many were held), unless the run left the
rule's statuses by then (it recovered: nothing to say).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from progresskit import Change, RunStatus, Status

__all__ = [
    "DEFAULT_EVERY_MINUTES",
    "DEFAULT_STATUSES",
    "Message",
    "Pacer",
    "Rule",
    "parse_rules",
]

DEFAULT_STATUSES = ("crashed", "failed", "stuck")
DEFAULT_EVERY_MINUTES = 30.0
_RULE_KEYS = ("statuses", "runs", "every_minutes")


def _glob_matches(path: str, pattern: str) -> bool:
    # Anchored at a directory boundary: "sweep-*" is a run named so anywhere in the tree,
    # "/data/runs/*" a run under that directory (fnmatch's "*" crosses "/").
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern)


@attrs.frozen
class Rule:
    """Runs (globs over their work dir), the statuses worth a message, and the pace."""

    statuses: frozenset[Status] = frozenset(Status(s) for s in DEFAULT_STATUSES)
    runs: tuple[str, ...] = ("*",)
    every_minutes: float = DEFAULT_EVERY_MINUTES

    def holds(self, run: RunStatus) -> bool:
        return run.status in self.statuses and any(
            _glob_matches(run.work_dir, pattern) for pattern in self.runs
        )


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a non-empty list of strings, got {value!r}")
    return value


def _rule(entry: Any, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping ({', '.join(_RULE_KEYS)}), got {entry!r}")
    unknown = sorted(set(entry) - set(_RULE_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"(expected: {', '.join(_RULE_KEYS)})"
        )
    names = _strings(entry.get("statuses", list(DEFAULT_STATUSES)), f"{where}.statuses")
    valid = [s.value for s in Status]
    wrong = [n for n in names if n not in valid]
    if wrong:
        raise ValueError(
            f"{where}.statuses: unknown status {wrong[0]!r} (expected: {', '.join(valid)})"
        )
    every = entry.get("every_minutes", DEFAULT_EVERY_MINUTES)
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
        raise ValueError(f"{where}.every_minutes: expected a number >= 0, got {every!r}")
    return Rule(
        frozenset(Status(n) for n in names),
        tuple(_strings(entry.get("runs", ["*"]), f"{where}.runs")),
        float(every),
    )


def parse_rules(value: Any) -> tuple[Rule, ...]:
    """The rules of a ``rules:`` list; raises ``ValueError`` saying which entry and key is
    wrong and what was expected."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of rules, got {value!r}")
    return tuple(_rule(entry, f"rules[{index}]") for index, entry in enumerate(value))


@attrs.frozen
class Message:
    """One message to send: the change it tells, and how many changes were held for it."""

    change: Change
    held: int = 0


@attrs.define
class _Held:
    change: Change
    count: int


class Pacer:
    """The rules applied to a stream of changes: what to send now and what later.

    Not thread-safe; the sink calls it under its lock. ``now`` is a monotonic time in
    seconds."""

    def __init__(self, rules: Sequence[Rule], *, notify_new: bool = False):
        self.rules = tuple(rules)
        self.notify_new = notify_new
        #: (rule index, work dir) -> when the last message went out.
        self._sent: dict[tuple[int, str], float] = {}
        self._held: dict[tuple[int, str], _Held] = {}

    def offer(self, change: Change, now: float) -> Message | None:
        """The message ``change`` makes now, if any; it may be held for later instead."""
        run = change.run
        if change.kind == "changed" and change.previous_status is run.status:
            return None  # progress within a status: not news for a person
        if change.kind not in ("changed", "new") or (
            change.kind == "new" and not self.notify_new
        ):
            return None  # heartbeats, removals, snapshots: no transition
        for index, rule in enumerate(self.rules):
            key = (index, run.work_dir)
            if not rule.holds(run):
                # It left this rule's statuses (it recovered): a held message is stale.
                self._held.pop(key, None)
                continue
            last = self._sent.get(key)
            if last is not None and now - last < rule.every_minutes * 60:
                held = self._held.get(key)
                self._held[key] = _Held(change, 1 if held is None else held.count + 1)
                return None
            self._sent[key] = now
            self._held.pop(key, None)
            return Message(change)
        return None

    def due(self, now: float) -> list[Message]:
        """The held messages whose time has come (each run's newest held change)."""
        ready = []
        for key, held in list(self._held.items()):
            if now - self._sent[key] >= self.rules[key[0]].every_minutes * 60:
                del self._held[key]
                self._sent[key] = now
                ready.append(Message(held.change, held.count - 1))
        return ready

    def next_due(self) -> float | None:
        """When the next held message is due (monotonic seconds), if one is held."""
        times = [self._sent[k] + self.rules[k[0]].every_minutes * 60 for k in self._held]
        return min(times, default=None)

    @property
    def held(self) -> int:
        """Messages held now."""
        return len(self._held)
