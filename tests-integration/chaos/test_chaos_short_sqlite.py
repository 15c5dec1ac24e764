"""The short chaos run on SQLite: a worker SIGKILL storm over 500 jobs (CLI workers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(120)
def test_worker_sigkill_storm_loses_nothing(run_chaos: Callable[[str, str, int], None]) -> None:
    run_chaos("sqlite", "storm", 500)
