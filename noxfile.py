"""Every check of the lexigram-tasks monorepo: the one entry point for CI and for local runs.

``nox`` runs the default sessions (lint, typecheck, unit, integration, wheels, docs, and
unit_other on every other supported Python found here), ``nox -l`` lists all of them,
``nox -s lint`` runs one. Arguments after ``--`` go to the session's tool, e.g.
``nox -s "unit(core)" -- -k retry``; a path among them replaces the session's default test
paths. See docs/development.md.

Sessions run on the interpreter that runs nox (3.11+); ``unit_other`` repeats the unit sessions
on Python 3.12 and 3.13 when uv (or PATH) finds them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"

nox.options.default_venv_backend = "uv|virtualenv"
# The test suites start hundreds of worker and CLI subprocesses. With PYTHONDONTWRITEBYTECODE
# set (some CI machines set it) each one would compile every module it imports from source,
# about a second per start on a 2-core machine; let the first import write the bytecode
# instead (into gitignored __pycache__ folders, as running from a checkout always does).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
nox.options.error_on_missing_interpreters = "CI" in os.environ
# Reuse venvs by default for speed; the sessions whose point is a clean install (unit: no
# undeclared deps; wheels: nothing but the built wheels) pass reuse_venv=False.
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "unit", "integration", "wheels", "docs"]

# Every distribution that holds code, in dependency order; short ids name the unit sessions.
PACKAGES = {
    "contracts": "lexigram-contracts-tasks",
    "kernel": "lexigram-kernel",
    "core": "lexigram-tasks-core",
    "redis": "lexigram-tasks-redis",
    "rabbitmq": "lexigram-tasks-rabbitmq",
    "postgres": "lexigram-tasks-postgres",
    "sqlite": "lexigram-tasks-sqlite",
}
META = "lexigram-tasks"
FIRST_PARTY = frozenset([*PACKAGES.values(), META])
# Optional features a package is installed with in editable sessions (core: croniter for cron,
# prometheus-client for the metrics observer, opentelemetry-api for tracing, Starlette for the web
# helpers, Jinja2 and uvicorn for the dashboard, so typecheck and the tests see them).
EXTRAS = {"lexigram-tasks-core": ["cron", "prometheus", "otel", "web", "dashboard"]}

# Tool versions are pinned so that a new release cannot turn CI red on an unchanged tree.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
TYPE_STUBS = ["types-PyYAML", "types-croniter", "asyncpg-stubs"]
# mypy checks the unit tests too, so that they cannot drift from the typed API; a test may leave
# out annotations, but its body is still checked. These are flags, not a per-module override in
# pyproject.toml, because an override cannot name the test modules: they are top-level (no
# __init__.py), and mypy's patterns cannot say `test_*`.
TESTS_MYPY_FLAGS = ["--allow-untyped-defs", "--allow-incomplete-defs", "--check-untyped-defs"]
TOWNCRIER = "towncrier>=24"
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "pytest-timeout>=2.3"]
# Extra test-only needs per package: core's decorator tests run mypy on a sample to prove that
# task(...).delay() arguments are type-checked.
UNIT_EXTRA_DEPS: dict[str, list[str]] = {"lexigram-tasks-core": ["mypy==2.4.1"]}
# The RabbitMQ module of testcontainers imports pika; it is used only when a Docker engine answers.
TESTCONTAINERS = "testcontainers[rabbitmq]>=4"
# The integration session and the slowest unit sessions run their tests in several processes.
XDIST = "pytest-xdist>=3.5"
# Unit sessions spread over several processes. Their tests mostly wait (leases expiring,
# rate limits, supervised worker processes): core's 1,680 took 160 s of wall time for 33 s
# of CPU in one process, and 61 s in four, on two cores (SQLite's 53 s took 20 s). Work
# stealing keeps the longest tests (a 20 s supervisor storm) from ending up in one queue.
# The fast packages stay in one process: starting workers would cost more than it saves.
UNIT_PROCESSES: dict[str, int] = {"lexigram-tasks-core": 4, "lexigram-tasks-sqlite": 4}
# The TLS tests create their own certificate authority and server certificate.
CRYPTOGRAPHY = "cryptography>=42"
# The tracing tests export spans with the OpenTelemetry SDK (the product needs only the API); the
# web example is a FastAPI app called through httpx.
OTEL_SDK = "opentelemetry-sdk>=1.20,<2"
# The dashboard's extra (Jinja2, uvicorn), and Selenium for its browser tests: they drive the
# system's Chromium through the system chromedriver (`.ci/run` installs both), nothing downloaded.
WEB_TEST_DEPS = ["fastapi>=0.110", "httpx>=0.27", "jinja2>=3.1", "uvicorn>=0.23", "selenium>=4.10"]
DASHBOARD_DOC_DEPS = ["fastapi>=0.110", "httpx>=0.27", "jinja2>=3.1"]
DOCS_DEPS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]
# The other supported interpreters the unit tests also run on, when this machine has them.
OTHER_PYTHONS = ("3.12", "3.13")

# Built wheels are checked by the wheels session (LEXIGRAM_WHEELHOUSE); integration skips a rebuild.
WHEEL_GUARD = (
    "tests-integration/packaging/test_namespace_layout.py::test_wheels_ship_disjoint_files"
)
REQUIRED_DOCS = [ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "docs" / "development.md"]


def _expose_pyenv_versions() -> None:
    """Let uv and PATH lookups see pyenv's other installed Pythons (3.12, 3.13).

    pyenv's shims answer only for the selected versions; listing the newest installed patch
    release of each other supported minor after the selected ones in PYENV_VERSION makes
    ``python3.12`` resolve without changing what ``python3`` is.
    """
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return

    def ask(*args: str) -> str:
        run = subprocess.run([pyenv, *args], capture_output=True, text=True, check=False)  # noqa: S603
        return run.stdout if run.returncode == 0 else ""

    installed: dict[str, tuple[int, ...]] = {}
    for name in ask("versions", "--bare").split():
        parts = name.split(".")
        if len(parts) == 3 and all(part.isdigit() for part in parts):  # noqa: PLR2004
            minor = ".".join(parts[:2])
            release = tuple(int(part) for part in parts)
            if minor in OTHER_PYTHONS and release > installed.get(minor, ()):
                installed[minor] = release
    if not installed:
        return
    selected = os.environ.get("PYENV_VERSION") or ask("version-name").strip() or "system"
    extra = [".".join(map(str, release)) for release in installed.values()]
    os.environ["PYENV_VERSION"] = ":".join([selected, *extra])


def _has_python(version: str) -> bool:
    """Whether a working interpreter of ``version`` is installed: asks uv, else PATH."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return False  # the unit sessions already run on it
    uv = shutil.which("uv")
    if uv is not None:
        command = [uv, "python", "find", "--no-project", version]
    else:
        executable = shutil.which(f"python{version}")
        if executable is None:
            return False
        command = [executable, "-c", "pass"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0  # noqa: S603


_expose_pyenv_versions()
FOUND_PYTHONS = [version for version in OTHER_PYTHONS if _has_python(version)]
if FOUND_PYTHONS:
    nox.options.sessions.append("unit_other")


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


def _test_extra_requirements() -> list[str]:
    """The third-party requirements of every package's `test` extra."""
    reqs = {
        raw
        for dist in PACKAGES.values()
        for raw in _pyproject(dist)["project"].get("optional-dependencies", {}).get("test", [])
        if canonicalize_name(Requirement(raw).name) not in FIRST_PARTY
    }
    return sorted(reqs)


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
    """Run mypy --strict over every packages/*/src, then over each package's unit tests.

    The type gate (config in pyproject.toml). With arguments, one plain mypy run of them.
    """
    # Every package editable, so mypy sees each third-party dependency's types, and what the
    # `test` extras add from the index, so it sees what the tests import.
    session.install(
        MYPY,
        *TYPE_STUBS,
        *TEST_DEPS,
        *_test_extra_requirements(),
        *_editable(list(PACKAGES.values())),
    )
    session.run("mypy", *session.posargs)
    if session.posargs:  # a developer's selection
        return
    # One run per package: packages hold test files of the same name (pytest's importlib mode
    # allows it), which one run would reject as duplicate modules.
    for dist in PACKAGES.values():
        session.run("mypy", *TESTS_MYPY_FLAGS, f"packages/{dist}/tests")


@nox.session(reuse_venv=False)
@nox.parametrize("package", list(PACKAGES.values()), ids=list(PACKAGES))
def unit(session: nox.Session, package: str) -> None:
    """Unit tests of one package, installed alone with only its first-party deps (editable)."""
    _unit(session, package)


def _unit(session: nox.Session, package: str, *, default_marks: str | None = None) -> None:
    extra = UNIT_EXTRA_DEPS.get(package, [])
    # A package's `test` extra declares what its tests need beyond its own dependencies (a
    # backend that runs core's conformance kit names core there): those first-party
    # distributions are installed editable too, the rest from the index.
    dists = _first_party_closure(package)
    for raw in _pyproject(package)["project"].get("optional-dependencies", {}).get("test", []):
        name = canonicalize_name(Requirement(raw).name)
        if name in FIRST_PARTY:
            dists += [dist for dist in _first_party_closure(name) if dist not in dists]
        else:
            extra = [*extra, raw]
    processes = UNIT_PROCESSES.get(package)
    if processes is not None:
        extra = [*extra, XDIST]
    session.install(*TEST_DEPS, *extra, *_editable(dists))
    defaults = [f"packages/{package}/tests"]
    if processes is not None:
        defaults += ["-n", str(processes), "--dist", "worksteal"]
    if default_marks is not None and not any(arg.startswith("-m") for arg in session.posargs):
        defaults += ["-m", default_marks]
    session.run("pytest", *_pytest_args(session, *defaults))


if FOUND_PYTHONS:

    @nox.session(python=FOUND_PYTHONS, reuse_venv=False)
    @nox.parametrize("package", list(PACKAGES.values()), ids=list(PACKAGES))
    def unit_other(session: nox.Session, package: str) -> None:
        """The unit session on each other supported Python found here (3.12, 3.13).

        Tests marked ``slow`` (lease waits, worker processes, stress runs) exercise timing,
        not the interpreter, and already run on the main Python: leaving them out here
        keeps the default suite's run time down. ``nox -s unit_other -- -m ''`` runs all.
        """
        _unit(session, package, default_marks="not slow")


@nox.session
def integration(session: nox.Session) -> None:
    """Integration tests and packaging guards against real services, every package editable."""
    session.install(
        *TEST_DEPS,
        XDIST,
        CRYPTOGRAPHY,
        TESTCONTAINERS,
        OTEL_SDK,
        *WEB_TEST_DEPS,
        *_editable([*PACKAGES.values(), META]),
    )
    env = {"LEXIGRAM_INSTALL_MODE": "editable"}
    if session.posargs:  # a developer's selection: one plain run
        defaults = ("tests-integration", "--deselect", WHEEL_GUARD)
        session.run("pytest", *_pytest_args(session, *defaults), env=env)
        return
    # Most of these tests wait on brokers and subprocesses rather than compute, so two
    # processes (a test file stays in one) halve the wall time on two cores. Four took 252 s
    # where two take 424 s, but one run in four then failed on a socket some test leaked
    # (an unclosed connection, collected during a PostgreSQL TLS test): two until that leak
    # is found. Tests that disrupt a shared service for everyone (a broker restart) run
    # alone afterwards.
    common = ["tests-integration", "--deselect", WHEEL_GUARD]
    session.run("pytest", *common, "-n", "2", "--dist", "loadfile", "-m", "not exclusive", env=env)
    session.run("pytest", *common, "-m", "exclusive", env=env)


# Runs in the wheels venv from a scratch directory: the backend types resolve through their entry
# points to modules that come from the installed wheels, not from the checkout.
SMOKE = """\
import importlib.metadata as md, pathlib, sys
from lexigram.tasks import available_backends, load_backend
checkout = pathlib.Path(sys.argv[1])
types = ["memory", "sqlite", "redis", "rabbitmq", "postgres"]
assert set(types) <= set(available_backends()), f"installed backends: {available_backends()}"
for type_ in types:
    backend = load_backend(type_)  # core's own resolver, through the entry point
    assert callable(backend.create_queue), f"backend {type_!r} has no create_queue"
    ep = md.entry_points(group="lexigram.tasks.backends")[type_]
    where = pathlib.Path(sys.modules[ep.module].__file__).resolve()
    assert checkout not in where.parents, f"{ep.module} was imported from the checkout: {where}"
    print(f"smoke: backend type {type_!r} -> {ep.value} from {ep.dist.name} {ep.dist.version}")
# The dashboard's templates and static files are package data: the wheel must carry them.
import importlib.util
tasks_dir = pathlib.Path(importlib.util.find_spec("lexigram.tasks").submodule_search_locations[0])
for shipped in ("templates/base.html", "templates/overview.html", "static/dashboard.js"):
    assert (tasks_dir / "dashboard" / shipped).is_file(), f"the wheel lacks dashboard/{shipped}"
print("smoke: the dashboard's templates and static files are in the wheel")
"""


@nox.session(reuse_venv=False)
def wheels(session: nox.Session) -> None:
    """Build every wheel; install from them alone, run guards, smoke and index-resolution checks."""
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
    _check_public_index_resolution(session, uv, wheelhouse)


# What `pip install "lexigram-tasks[redis]"` must bring, and what it must not.
REDIS_EXTRA_CHECK = """\
import importlib.metadata as md, importlib.util, sys
names = {d.metadata["Name"] for d in md.distributions()}
first_party = {name for name in names if name.startswith("lexigram")}
expected = {"lexigram-tasks", "lexigram-contracts-tasks", "lexigram-kernel",
            "lexigram-tasks-core", "lexigram-tasks-sqlite", "lexigram-tasks-redis"}
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
    # The meta package needs core and the SQLite backend; its redis extra adds Redis.
    closure = sorted(
        {
            *_first_party_closure("lexigram-tasks-core"),
            *_first_party_closure("lexigram-tasks-sqlite"),
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


# What `pip install "lexigram-tasks[redis]"` resolves to when the built wheels sit beside the public
# index, which holds an unrelated `lexigram-tasks` 0.1.x: every first-party dist must be ours.
RESOLUTION_CHECK = """\
import importlib.metadata as md, sys
version = sys.argv[1]
found = {d.metadata["Name"]: d.version for d in md.distributions()
         if d.metadata["Name"].startswith("lexigram")}
assert found.get("lexigram-tasks") == version, f"resolved {found}, expected {version}"
stray = {name: v for name, v in found.items() if v != version}
assert not stray, f"not this project's version {version}: {stray}"
print("beside the public index, lexigram-tasks[redis] resolves to:",
      ", ".join(f"{name} {v}" for name, v in sorted(found.items())))
"""


def _check_public_index_resolution(session: nox.Session, uv: str, wheelhouse: Path) -> None:
    """With the wheels beside the index, pip and uv pick ours over its older `lexigram-tasks`."""
    venv_dir = Path(session.create_tmp()).resolve() / "public-index"
    shutil.rmtree(venv_dir, ignore_errors=True)
    session.run(uv, "venv", "--quiet", "--seed", str(venv_dir))
    python = str(venv_dir / "bin" / "python")
    requirement = f"{META}[redis]"
    session.run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--find-links",
        str(wheelhouse),
        requirement,
        external=True,
    )
    scratch = Path(session.create_tmp())
    (scratch / "resolution.py").write_text(RESOLUTION_CHECK, encoding="utf-8")
    with session.chdir(scratch):
        session.run(python, "resolution.py", _version(), external=True)
    # uv resolves the same way (its default index strategy also sees the wheelhouse).
    session.run(uv, "pip", "uninstall", "--quiet", "--python", python, *FIRST_PARTY)
    session.run(
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        python,
        "--no-cache",
        "--find-links",
        str(wheelhouse),
        requirement,
    )
    with session.chdir(scratch):
        session.run(python, "resolution.py", _version(), external=True)


@nox.session
def docs(session: nox.Session) -> None:
    """Run every python block of README.md and docs/ as written; build the site with --strict."""
    problems = [f"missing page: {p.relative_to(ROOT)}" for p in REQUIRED_DOCS if not p.is_file()]
    if problems:
        session.error("; ".join(problems))
    # pytest too: "Writing a backend" runs the conformance kit the way a backend's tests do.
    # Ruff too: mkdocstrings formats the signatures of the API reference with it.
    # FastAPI, httpx and Jinja2 too: the operations page mounts the dashboard in an app.
    session.install(
        *DOCS_DEPS, RUFF, *TEST_DEPS, *DASHBOARD_DOC_DEPS, *_editable([*PACKAGES.values(), META])
    )
    # Each block runs in a fresh process; blocks that need Redis, PostgreSQL or RabbitMQ use
    # the local servers CI has. Pages can be named: `nox -s docs -- docs/cli.md`.
    session.run("pytest", "tests-docs")  # the checker's own tests
    session.run("python", "tests-docs/check_docs.py", *session.posargs)
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )


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


@nox.session(name="kit-mutants", default=False)
def kit_mutants(session: nox.Session) -> None:
    """Measure the conformance kit: it must pass a reference backend and fail every mutant.

    Runs tests-kit/run_mutants.py (arguments after ``--`` go to it, e.g. ``-- --jobs 1
    stale_ack``); prints one row per mutant and fails if one survives.
    """
    session.install(*_editable(_first_party_closure("lexigram-tasks-core")), *TEST_DEPS)
    session.run("python", str(ROOT / "tests-kit" / "run_mutants.py"), *session.posargs)


@nox.session(default=False)
def chaos(session: nox.Session) -> None:
    """Fault-injection runs of the CLI workers on private brokers (opt-in; not in CI's run).

    Runs tests-chaos/run.py: worker SIGKILL storms, broker kill -9 and restart, broker pause,
    poison payloads, scheduler churn and producer kills on SQLite, Redis, PostgreSQL and
    RabbitMQ, each on its own broker instance on a free loopback port (arguments after ``--``
    go to it, e.g. ``-- --backends redis --scenarios storm --jobs 1000``, or ``-- --short``).
    Prints one table and fails on any lost, unexplained duplicate or stuck job. Needs
    redis-server, PostgreSQL's initdb/pg_ctl and rabbitmq-server on this machine. A short
    variant runs in the integration session (tests-integration/chaos).
    """
    session.install(*_editable([*PACKAGES.values(), META]))
    session.run("python", str(ROOT / "tests-chaos" / "run.py"), *session.posargs)
