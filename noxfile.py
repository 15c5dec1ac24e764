"""Every check of the lexigram-tasks monorepo: the one entry point for CI and for local runs.

``nox`` runs the default sessions (lint, typecheck, unit, integration, wheels), ``nox -l`` lists
all of them, ``nox -s lint`` runs one. Arguments after ``--`` go to the session's tool, e.g.
``nox -s "unit(core)" -- -k retry``; a path among them replaces the session's default test
paths. See docs/development.md (house-style §2.8).

Sessions run on the interpreter that runs nox (3.11+); ``nox --force-python 3.12`` tries another.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = "CI" in os.environ
# Reuse venvs by default for speed; the sessions whose point is a clean install (unit: no
# undeclared deps; wheels: nothing but the built wheels) pass reuse_venv=False.
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "unit", "integration", "wheels"]

# Every distribution that holds code, in dependency order; short ids name the unit sessions.
PACKAGES = {
    "contracts": "lexigram-contracts-tasks",
    "kernel": "lexigram-kernel",
    "core": "lexigram-tasks-core",
    "redis": "lexigram-tasks-redis",
    "rabbitmq": "lexigram-tasks-rabbitmq",
    "postgres": "lexigram-tasks-postgres",
}
META = "lexigram-tasks"
FIRST_PARTY = frozenset([*PACKAGES.values(), META])
# Optional features a package is installed with in editable sessions (core's cron = croniter).
EXTRAS = {"lexigram-tasks-core": ["cron"]}

# Tool versions are pinned so that a new release cannot turn CI red on an unchanged tree.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
TYPE_STUBS = ["types-PyYAML", "types-croniter", "asyncpg-stubs"]
TOWNCRIER = "towncrier>=24"
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3"]
# Extra test-only needs per package: core's decorator tests run mypy on a sample to prove that
# task(...).delay() arguments are type-checked.
UNIT_EXTRA_DEPS: dict[str, list[str]] = {"lexigram-tasks-core": ["mypy==2.4.1"]}
# The RabbitMQ module of testcontainers imports pika; it is used only when a Docker engine answers.
TESTCONTAINERS = "testcontainers[rabbitmq]>=4"

# Built wheels are checked by the wheels session (LEXIGRAM_WHEELHOUSE); integration skips a rebuild.
WHEEL_GUARD = (
    "tests-integration/packaging/test_namespace_layout.py::test_wheels_ship_disjoint_files"
)
REQUIRED_DOCS = [ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "docs" / "development.md"]


def _pyproject(dist: str) -> dict[str, Any]:
    with (PACKAGES_DIR / dist / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _version() -> str:
    """The lockstep version, as the meta distribution declares it."""
    return str(_pyproject(META)["project"]["version"])


def _first_party_closure(dist: str) -> list[str]:
    """``dist`` and every first-party distribution it depends on, dependencies first."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for raw in _pyproject(name)["project"].get("dependencies", []):
            dep = canonicalize_name(Requirement(raw).name)
            if dep in FIRST_PARTY:
                visit(dep)
        ordered.append(name)

    visit(dist)
    return ordered


def _editable(dists: list[str]) -> list[str]:
    """``-e packages/<dist>[extras]`` args, so the resolver never looks for them on an index."""
    args: list[str] = []
    for dist in dists:
        extras = EXTRAS.get(dist)
        suffix = f"[{','.join(extras)}]" if extras else ""
        args += ["-e", f"{PACKAGES_DIR / dist}{suffix}"]
    return args


def _third_party_requirements(dists: list[str] | None = None) -> list[str]:
    """What the first-party wheels need from the index: their deps plus the extras we install."""
    reqs: list[str] = []
    for dist in dists if dists is not None else PACKAGES.values():
        project = _pyproject(dist)["project"]
        raw = list(project.get("dependencies", []))
        for extra in EXTRAS.get(dist, []):
            raw += project.get("optional-dependencies", {}).get(extra, [])
        reqs += [r for r in raw if canonicalize_name(Requirement(r).name) not in FIRST_PARTY]
    return sorted(set(reqs))


def _pytest_args(session: nox.Session, *defaults: str) -> list[str]:
    """Session posargs for pytest; the default targets unless the posargs name a path."""
    names_a_path = any(
        not arg.startswith("-") and (ROOT / arg.split("::", 1)[0]).exists()
        for arg in session.posargs
    )
    return [*session.posargs] if names_a_path else [*defaults, *session.posargs]


def _uv(session: nox.Session) -> str:
    """The uv command for this session: nox's own under the uv backend, else install it."""
    if session.venv_backend != "uv":
        session.install("uv")
    return "uv"


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff lint rules and the ruff formatter in check mode over the whole tree."""
    session.install(RUFF)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tools/check_layers.py")  # import layering (no dependencies)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict over every packages/*/src (the type gate; config in pyproject.toml)."""
    # Every package editable, so mypy sees each third-party dependency's types.
    session.install(MYPY, *TYPE_STUBS, *TEST_DEPS, *_editable(list(PACKAGES.values())))
    session.run("mypy", *session.posargs)


@nox.session(reuse_venv=False)
@nox.parametrize("package", list(PACKAGES.values()), ids=list(PACKAGES))
def unit(session: nox.Session, package: str) -> None:
    """Unit tests of one package, installed alone with only its first-party deps (editable)."""
    extra = UNIT_EXTRA_DEPS.get(package, [])
    session.install(*TEST_DEPS, *extra, *_editable(_first_party_closure(package)))
    session.run("pytest", *_pytest_args(session, f"packages/{package}/tests"))


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests and packaging guards against real services, every package editable."""
    session.install(*TEST_DEPS, TESTCONTAINERS, *_editable([*PACKAGES.values(), META]))
    session.run(
        "pytest",
        *_pytest_args(session, "tests-integration", "--deselect", WHEEL_GUARD),
        env={"LEXIGRAM_INSTALL_MODE": "editable"},
    )


# Runs in the wheels venv from a scratch directory: the backend types resolve through their entry
# points to modules that come from the installed wheels, not from the checkout.
SMOKE = """\
import importlib.metadata as md, pathlib, sys
from lexigram.tasks import available_backends, load_backend
checkout = pathlib.Path(sys.argv[1])
types = ["memory", "redis", "rabbitmq", "postgres"]
assert set(types) <= set(available_backends()), f"installed backends: {available_backends()}"
for type_ in types:
    backend = load_backend(type_)  # core's own resolver, through the entry point
    assert callable(backend.create_queue), f"backend {type_!r} has no create_queue"
    ep = md.entry_points(group="lexigram.tasks.backends")[type_]
    where = pathlib.Path(sys.modules[ep.module].__file__).resolve()
    assert checkout not in where.parents, f"{ep.module} was imported from the checkout: {where}"
    print(f"smoke: backend type {type_!r} -> {ep.value} from {ep.dist.name} {ep.dist.version}")
"""


@nox.session(reuse_venv=False)
def wheels(session: nox.Session) -> None:
    """Build every wheel, install lexigram-tasks[all] from them alone, run guards and smoke test."""
    uv = _uv(session)
    wheelhouse = Path(session.create_tmp()) / "wheelhouse"
    shutil.rmtree(wheelhouse, ignore_errors=True)
    wheelhouse.mkdir(parents=True)
    for dist in [*PACKAGES.values(), META]:
        session.run(
            uv,
            "build",
            "--wheel",
            "--quiet",
            "--out-dir",
            str(wheelhouse),
            str(PACKAGES_DIR / dist),
        )

    # Third-party deps come from the index; every first-party dist must come from the wheelhouse,
    # which --no-index guarantees (an index could hold unrelated `lexigram-*` releases).
    session.install(*TEST_DEPS, *_third_party_requirements())
    # --no-cache: uv caches wheels by file name, and every local build of one version has the same
    # name, so a cached older build would otherwise be installed instead of the one just built.
    session.install("--no-cache", "--no-index", "--find-links", str(wheelhouse), f"{META}[all]")

    # Smoke test from a neutral directory, so nothing in the checkout can be imported by accident.
    scratch = Path(session.create_tmp())
    (scratch / "smoke.py").write_text(SMOKE, encoding="utf-8")
    with session.chdir(scratch):
        session.run("python", "smoke.py", str(PACKAGES_DIR))
    session.run(
        "pytest",
        *_pytest_args(session, "tests-integration/packaging"),
        env={"LEXIGRAM_INSTALL_MODE": "wheel", "LEXIGRAM_WHEELHOUSE": str(wheelhouse)},
    )
    _check_redis_extra(session, uv, wheelhouse)


# What `pip install "lexigram-tasks[redis]"` must bring, and what it must not.
REDIS_EXTRA_CHECK = """\
import importlib.metadata as md, importlib.util, sys
names = {d.metadata["Name"] for d in md.distributions()}
first_party = {name for name in names if name.startswith("lexigram")}
expected = {"lexigram-tasks", "lexigram-contracts-tasks", "lexigram-kernel",
            "lexigram-tasks-core", "lexigram-tasks-redis"}
assert first_party == expected, f"first-party dists installed: {sorted(first_party)}"
for absent in ("asyncpg", "aio_pika"):
    assert importlib.util.find_spec(absent) is None, f"{absent} was installed by the redis extra"
import lexigram.tasks.backends.redis as redis_backend
from lexigram.tasks import TaskBackendSpec, load_backend
from lexigram.tasks._backends import create_queue
assert load_backend("redis") is redis_backend.backend
queue = create_queue(TaskBackendSpec(type="redis", url="redis://127.0.0.1:6379/0"))
assert type(queue).__name__ == "RedisTaskQueue", type(queue)
print("lexigram-tasks[redis] installs:", ", ".join(sorted(first_party)))
"""


def _check_redis_extra(session: nox.Session, uv: str, wheelhouse: Path) -> None:
    """In a fresh venv, ``lexigram-tasks[redis]`` from the wheels installs exactly its closure."""
    venv_dir = Path(session.create_tmp()).resolve() / "redis-extra"
    shutil.rmtree(venv_dir, ignore_errors=True)
    session.run(uv, "venv", "--quiet", str(venv_dir))
    python = str(venv_dir / "bin" / "python")
    # The meta package needs core; its redis extra adds the redis backend.
    closure = sorted(
        {
            *_first_party_closure("lexigram-tasks-core"),
            *_first_party_closure("lexigram-tasks-redis"),
        }
    )
    session.run(
        uv, "pip", "install", "--quiet", "--python", python, *_third_party_requirements(closure)
    )
    session.run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--no-cache",
        "--no-index",
        "--find-links",
        str(wheelhouse),
        f"{META}[redis]",
    )
    scratch = Path(session.create_tmp())
    (scratch / "redis_extra.py").write_text(REDIS_EXTRA_CHECK, encoding="utf-8")
    with session.chdir(scratch):
        session.run(python, "redis_extra.py", external=True)


@nox.session(venv_backend="none", default=False)
def docs(session: nox.Session) -> None:
    """Check README.md and docs/*.md: required pages exist, links resolve, python blocks compile."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = [f"missing page: {p.relative_to(ROOT)}" for p in REQUIRED_DOCS if not p.is_file()]
    for page in pages:
        problems += _check_page(page)
    for problem in problems:
        session.warn(problem)
    if problems:
        session.error(f"{len(problems)} documentation problem(s), listed above.")
    session.log(f"{len(pages)} pages checked.")


def _check_page(page: Path) -> list[str]:
    """Relative links that point nowhere, and ```python blocks that do not compile."""
    text = page.read_text(encoding="utf-8")
    name = str(page.relative_to(ROOT))
    problems: list[str] = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path = target.split("#", 1)[0]
        external = "://" in path or path.startswith("mailto:")
        if path and not external and not (page.parent / path).exists():
            problems.append(f"{name}: broken link {target!r}")
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.DOTALL), 1):
        try:
            compile(block, f"{name} python block {number}", "exec")
        except SyntaxError as exc:
            problems.append(f"{name}: python block {number} does not compile: {exc}")
    return problems


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """Install core (with contracts and kernel) editable and run `lexigram-tasks demo`."""
    session.install(*_editable(_first_party_closure("lexigram-tasks-core")))
    session.run("lexigram-tasks", "demo", *session.posargs)


@nox.session(default=False)
def changelog(session: nox.Session) -> None:
    """Preview the next CHANGELOG.md section from the changes/ fragments (towncrier --draft)."""
    session.install(TOWNCRIER)
    session.run("towncrier", "build", "--draft", "--version", _version(), *session.posargs)
