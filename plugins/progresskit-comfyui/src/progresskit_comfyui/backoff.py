"""Exponential backoff with jitter for reconnecting to a server that went away."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

__all__ = ["Backoff"]


@attrs.frozen
class Backoff:
    """Delay before retry ``n`` (0-based): ``min(cap, base * factor**n)``, jittered.

    "Equal jitter": the delay is drawn from the upper half of that bound, so monitors
    that lost the same server at the same moment spread their retries, and no retry ever
    comes sooner than ``base / 2``: a dead server never causes a tight loop.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    #: Source of randomness in [0, 1); injectable for tests.
    random: Callable[[], float] = attrs.field(default=random.random, eq=False)

    def __attrs_post_init__(self) -> None:
        if not (self.base > 0 and self.factor >= 1 and self.cap >= self.base):
            raise ValueError(
                f"backoff needs base > 0, factor >= 1 and cap >= base, got base={self.base}, "
                f"factor={self.factor}, cap={self.cap}"
            )

    def bound(self, attempt: int) -> float:
        # Exponent capped: factor**attempt overflows a float long before anyone cares.
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        bound = self.bound(attempt)
        return bound / 2 + self.random() * bound / 2
