"""The priority levels of the public API (`Priority`, defined in the contracts)."""

from __future__ import annotations

from lexigram.contracts.tasks import Priority

__all__ = ["Priority"]
