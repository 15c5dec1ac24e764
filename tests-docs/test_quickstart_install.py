"""The README's quickstart runs in the .venv that `python3 dev.py demo` builds.

Its `lexigram-tasks worker myapp` and `lexigram-tasks enqueue ...` share jobs through the
default SQLite file. Without the SQLite backend in that .venv both commands fall back to the
in-memory backend and the enqueued job is lost with its process, so dev.py must install it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_venv_gets_the_sqlite_backend_the_quickstart_uses() -> None:
    names = [package.split("[", 1)[0] for package in load_dev().DEMO_PACKAGES]
    assert "lexigram-tasks-sqlite" in names
    assert "lexigram-tasks-core" in names


def test_every_demo_package_is_a_package_of_the_checkout() -> None:
    for package in load_dev().DEMO_PACKAGES:
        name = package.split("[", 1)[0]
        assert (ROOT / "packages" / name / "pyproject.toml").is_file(), name


def test_the_quickstart_still_runs_worker_and_enqueue_with_nothing_configured() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "lexigram-tasks worker myapp" in readme
    assert "lexigram-tasks enqueue send_welcome --args '[42]'" in readme
    assert ". .venv/bin/activate" in readme
