"""Small enums of the public API."""

from __future__ import annotations

from enum import StrEnum

from lexigram.contracts.tasks import Priority


class PoolStrategy(StrEnum):
    """How a worker pool sizes itself."""

    FIXED = "fixed"
    DYNAMIC = "dynamic"
    ADAPTIVE = "adaptive"


__all__ = ["PoolStrategy", "Priority"]
