"""A rate such as ``60/minute``: at most this many in each fixed window of time."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_FORM = re.compile(r"\s*(\d+)\s*/\s*(?:(\d+)\s*)?(second|minute|hour|day)s?\s*")

UNLIMITED = "unlimited"
"""A key's rate (``framecast keys set-limits --rate unlimited``) that lifts the server's."""


@dataclass(frozen=True)
class Rate:
    count: int
    window_seconds: int

    def __str__(self) -> str:
        for unit, seconds in sorted(_UNITS.items(), key=lambda u: -u[1]):
            if self.window_seconds % seconds == 0:
                n = self.window_seconds // seconds
                return f"{self.count}/{unit}" if n == 1 else f"{self.count}/{n} {unit}s"
        return f"{self.count}/{self.window_seconds} seconds"  # pragma: no cover - units cover all

    def window_of(self, now: float) -> int:
        """The start (epoch seconds) of the fixed window ``now`` falls in."""
        return int(now // self.window_seconds) * self.window_seconds

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window ``now`` falls in ends (at least 1)."""
        return max(1, math.ceil(self.window_of(now) + self.window_seconds - now))


def parse_rate(text: str) -> Rate:
    """``"60/minute"``, ``"10/second"``, ``"1000/hour"``, ``"5000/day"``, ``"100/5 minutes"``."""
    match = _FORM.fullmatch(text)
    if not match:
        raise ValueError(
            f"'{text}' is not a rate; write a count per unit, e.g. 60/minute, 10/second, "
            "1000/hour or 100/5 minutes"
        )
    count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if count < 1 or multiple < 1:
        raise ValueError(
            f"'{text}' is not a usable rate: the count and the window must be at least 1"
        )
    return Rate(count, multiple * _UNITS[unit])
