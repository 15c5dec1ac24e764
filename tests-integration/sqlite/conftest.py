"""Fixtures of the SQLite crash tests: a fresh database file per test, and worker processes.

SQLite needs no service, so these tests never skip.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio

HERE = Path(__file__).parent

Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest_asyncio.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start a helper script of this directory; every process left is killed afterwards."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(script: str, *args: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / script),
            *args,
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
