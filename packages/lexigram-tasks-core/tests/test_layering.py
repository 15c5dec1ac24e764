"""``tools/check_layers.py``: the import-layering check of the lint step.

It runs on a small tree built here, so each rule is shown to fail on a planted import;
``nox -s lint`` runs it on the repository.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "tools" / "check_layers.py"


def _write(root: Path, dist: str, module: str, source: str) -> None:
    path = root / "packages" / dist / "src" / Path(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _write(tmp_path, "lexigram-contracts-tasks", "lexigram.contracts.tasks._a", "import json\n")
    _write(tmp_path, "lexigram-kernel", "lexigram.di._b", "from lexigram.app import x\n")
    _write(
        tmp_path,
        "lexigram-tasks-core",
        "lexigram.tasks._c",
        "from lexigram.tasks.backends.memory import MemoryTaskQueue\n",
    )
    _write(
        tmp_path,
        "lexigram-tasks-acme",
        "lexigram.tasks.backends.acme._queue",
        "from lexigram.contracts.tasks import Job\nfrom . import _other\n",
    )
    return tmp_path


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=False
    )


def test_a_clean_tree_passes(tree: Path) -> None:
    done = run(tree)
    assert done.returncode == 0, done.stdout
    assert "import only what they may" in done.stdout


@pytest.mark.parametrize(
    ("dist", "module", "source", "rule"),
    [
        (
            "lexigram-tasks-acme",
            "lexigram.tasks.backends.acme._bad",
            "def f():\n    from lexigram.tasks.hooks import HookRegistry\n",
            "backend 'acme' imports only lexigram.contracts, never the core",
        ),
        (
            "lexigram-tasks-acme",
            "lexigram.tasks.backends.acme._bad",
            "from lexigram.tasks.backends.redis import backend\n",
            "backend 'acme' imports no other backend",
        ),
        (
            "lexigram-tasks-acme",
            "lexigram.tasks.backends.acme._bad",
            "from ... import decorators\n",
            "backend 'acme' imports only lexigram.contracts, never the core",
        ),
        (
            "lexigram-contracts-tasks",
            "lexigram.contracts.tasks._bad",
            "from lexigram.tasks import Job\n",
            "the contracts import nothing first-party",
        ),
        (
            "lexigram-kernel",
            "lexigram.di._bad",
            (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from lexigram.contracts.tasks import Job\n"
            ),
            "the kernel imports nothing of tasks",
        ),
        (
            "lexigram-tasks-core",
            "lexigram.tasks._bad",
            "import lexigram.tasks.backends.redis\n",
            "the core names no backend",
        ),
    ],
    ids=["backend-core", "backend-backend", "backend-relative", "contracts", "kernel", "core"],
)
def test_a_planted_import_fails(tree: Path, dist: str, module: str, source: str, rule: str) -> None:
    _write(tree, dist, module, source)
    done = run(tree)
    assert done.returncode == 1
    assert rule in done.stdout
    assert "_bad.py:" in done.stdout
    assert "1 forbidden import(s)." in done.stdout
