"""The short chaos run on a private Redis: the broker is SIGKILLed mid-run and restarted.

The harness starts its own ``redis-server`` (append-only file, ``appendfsync always``) on a
free loopback port; the shared Redis is never touched, so this test is not ``exclusive``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import NoReturn

import pytest

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(120)
def test_broker_kill_and_restart_loses_nothing(
    run_chaos: Callable[[str, str, int], None], service_unavailable: Callable[[str], NoReturn]
) -> None:
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server is not on PATH; the chaos test starts its own.")
    run_chaos("redis", "broker-kill", 500)
