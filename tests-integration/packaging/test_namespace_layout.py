"""Guards for the namespace-package layout, entry points and lockstep versions.

nox runs this file in both install modes: ``integration``
(every package editable, ``LEXIGRAM_INSTALL_MODE=editable``) and ``wheels`` (everything from
built wheels, ``LEXIGRAM_INSTALL_MODE=wheel``, ``LEXIGRAM_WHEELHOUSE`` = the built wheels).
The layout trap these catch passes in exactly one of the two modes, so both must run.

(a) source tree rules 1-4, (b) entry points and import packages load, (c) lockstep versions,
(d) built wheels ship disjoint files.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata as md
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES_DIR = ROOT / "packages"
GROUP = "lexigram.tasks.backends"
SCHEMES_GROUP = "lexigram.tasks.url_schemes"
CORE = "lexigram-tasks-core"
META = "lexigram-tasks"

# Rule 1: the levels several distributions ship below. They hold only subdirectories.
SHARED = frozenset({"lexigram", "lexigram/contracts", "lexigram/tasks/backends"})
# Rule 2: owned by core, but the backends ship `backends/` through it, so it extends __path__.
EXTENDED = "lexigram/tasks"
EXTEND_PATH_LINE = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)'

# The import packages each distribution owns. A new top-level package is a
# layout decision: add it here in the same change. Core's memory backend sits inside core's own
# lexigram/tasks tree, whose py.typed covers it in every install mode (same src root, same wheel).
OWNED_ROOTS: dict[str, tuple[str, ...]] = {
    "lexigram-contracts-tasks": ("lexigram/contracts/tasks",),
    "lexigram-kernel": ("lexigram/di", "lexigram/app"),
    "lexigram-tasks-core": ("lexigram/tasks", "lexigram/tasks/backends/memory"),
    "lexigram-tasks-redis": ("lexigram/tasks/backends/redis",),
    "lexigram-tasks-rabbitmq": ("lexigram/tasks/backends/rabbitmq",),
    "lexigram-tasks-postgres": ("lexigram/tasks/backends/postgres",),
    "lexigram-tasks-sqlite": ("lexigram/tasks/backends/sqlite",),
}
META_EXTRAS = {
    "redis": "lexigram-tasks-redis",
    "rabbitmq": "lexigram-tasks-rabbitmq",
    "postgres": "lexigram-tasks-postgres",
}
INSTALL_MODE = os.environ.get("LEXIGRAM_INSTALL_MODE", "")  # "editable", "wheel" or unset


def _load_pyprojects() -> dict[str, dict[str, Any]]:
    projects: dict[str, dict[str, Any]] = {}
    for path in sorted(PACKAGES_DIR.glob("*/pyproject.toml")):
        with path.open("rb") as f:
            data = tomllib.load(f)
        projects[path.parent.name] = data
    return projects


PYPROJECTS = _load_pyprojects()
FIRST_PARTY = frozenset(PYPROJECTS)
CODE_DISTS = sorted(FIRST_PARTY - {META})


def _requirements(project: dict[str, Any]) -> list[Requirement]:
    raw = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        raw += extra
    return [Requirement(r) for r in raw]


def _first_party_requirements(project: dict[str, Any]) -> list[Requirement]:
    return [r for r in _requirements(project) if canonicalize_name(r.name) in FIRST_PARTY]


@dataclass
class _Dir:
    """One directory under some src/, as each distribution ships it."""

    files: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    subdirs: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    @property
    def dists(self) -> set[str]:
        return set(self.files) | set(self.subdirs)


@functools.cache
def _walk_sources() -> dict[str, _Dir]:
    """Map every directory (relative to src/, posix) to what each distribution has in it."""
    tree: dict[str, _Dir] = defaultdict(_Dir)
    for dist in CODE_DISTS:
        src = PACKAGES_DIR / dist / "src"
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(
                d for d in dirnames if d != "__pycache__" and not d.startswith(".")
            )
            rel = Path(dirpath).relative_to(src).as_posix()
            if rel == ".":
                continue
            entry = tree[rel]
            entry.files[dist].update(f for f in filenames if not f.endswith((".pyc", ".pyo")))
            entry.subdirs[dist].update(dirnames)
    return tree


def _parent(rel: str) -> str:
    return PurePosixPath(rel).parent.as_posix()


def _core_init() -> Path:
    return PACKAGES_DIR / CORE / "src" / EXTENDED / "__init__.py"


# --- (a) source tree -----------------------------------------------------------------------


def test_every_distribution_has_its_source_tree() -> None:
    assert {*OWNED_ROOTS, META} == FIRST_PARTY, "packages/ and OWNED_ROOTS disagree"
    for dist, data in PYPROJECTS.items():
        assert data["project"]["name"] == dist, f"packages/{dist} declares another name"
    missing = [d for d in CODE_DISTS if not (PACKAGES_DIR / d / "src").is_dir()]
    assert not missing, f"no src/ in: {missing}"
    assert not (PACKAGES_DIR / META / "src").exists(), "the meta distribution ships no code"


def test_shared_levels_hold_only_directories() -> None:
    tree = _walk_sources()
    offenders = {
        f"{dist}: {level}/{name}"
        for level in SHARED
        for dist, files in tree[level].files.items()
        for name in files
    }
    assert not offenders, (
        "shared namespace levels must hold only subdirectories (no __init__.py, modules or "
        f"py.typed): {sorted(offenders)}"
    )


def test_lexigram_tasks_is_owned_by_core_alone() -> None:
    entry = _walk_sources()[EXTENDED]
    assert "__init__.py" in entry.files[CORE]
    intruders = {
        dist: sorted(entry.files[dist]) + sorted(entry.subdirs[dist] - {"backends"})
        for dist in entry.dists - {CORE}
    }
    intruders = {dist: items for dist, items in intruders.items() if items}
    assert not intruders, (
        f"only core ships in {EXTENDED}/; others reach backends/ only: {intruders}"
    )


def test_every_other_directory_is_owned_by_one_distribution() -> None:
    problems = []
    for rel, entry in sorted(_walk_sources().items()):
        if rel in SHARED or rel == EXTENDED:
            continue
        if len(entry.dists) != 1:
            problems.append(f"{rel}/ is shipped by {sorted(entry.dists)}; exactly one may own it")
            continue
        (dist,) = entry.dists
        files = entry.files[dist]
        is_root = _parent(rel) in SHARED
        if (is_root or any(f.endswith(".py") for f in files)) and "__init__.py" not in files:
            problems.append(f"{dist}: {rel}/ has no __init__.py")
    assert not problems, "\n".join(problems)


def test_owned_packages_match_the_layout() -> None:
    tree = _walk_sources()
    found: dict[str, set[str]] = defaultdict(set)
    for rel, entry in tree.items():
        if rel == EXTENDED or (_parent(rel) in SHARED and rel not in SHARED):
            for dist in entry.dists:
                if rel != EXTENDED or "__init__.py" in entry.files[dist]:
                    found[dist].add(rel)
    expected = {dist: set(roots) for dist, roots in OWNED_ROOTS.items()}
    assert dict(found) == expected


def test_py_typed_in_every_owned_leaf_package() -> None:
    tree = _walk_sources()
    missing = []
    for dist, roots in OWNED_ROOTS.items():
        for root in roots:
            # A root nested in another root of the same distribution (core's memory backend in
            # lexigram/tasks) is covered by that root's py.typed.
            covered = any(
                root.startswith(f"{other}/") and "py.typed" in tree[other].files[dist]
                for other in roots
            )
            if not covered and "py.typed" not in tree[root].files[dist]:
                missing.append(f"{dist}: {root}/py.typed")
    assert not missing, f"missing PEP 561 markers: {missing}"


def test_lexigram_tasks_init_extends_path_on_its_first_line() -> None:
    source = _core_init().read_text(encoding="utf-8")
    assert source.splitlines()[0] == EXTEND_PATH_LINE, (
        f"{_core_init().relative_to(ROOT)} must begin with exactly {EXTEND_PATH_LINE!r} "
        "(it must stay the first line)"
    )
    touching = _lines_touching_path(source)
    assert touching == [1], f"only line 1 may touch __path__ there; also lines {touching[1:]}"


def _lines_touching_path(source: str) -> list[int]:
    return sorted(
        {
            node.lineno
            for node in ast.walk(ast.parse(source))
            if (isinstance(node, ast.Name) and node.id == "__path__")
            or (isinstance(node, ast.Attribute) and node.attr == "__path__")
        }
    )


def test_no_other_init_touches_path() -> None:
    inits = sorted(PACKAGES_DIR.glob("*/src/**/__init__.py"))
    offenders = [
        f"{init.relative_to(ROOT)}:{line}"
        for init in inits
        if init != _core_init()
        for line in _lines_touching_path(init.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"only lexigram/tasks/__init__.py may touch __path__: {offenders}"


@pytest.mark.parametrize("dist", sorted(FIRST_PARTY))
def test_pyproject_holds_packaging_only(dist: str) -> None:
    data = PYPROJECTS[dist]
    assert set(data) <= {"build-system", "project", "tool"}
    assert set(data.get("tool", {})) <= {"hatch"}, "tool config belongs in the root pyproject"
    assert "version" not in data["project"].get("dynamic", []), "lockstep versions are static"
    hatch = data.get("tool", {}).get("hatch", {})
    breaks = "breaks editable installs of namespace packages"
    assert "dev-mode-exact" not in hatch.get("build", {}), breaks
    assert "dev-mode-dirs" not in hatch.get("build", {}), breaks
    wheel = hatch.get("build", {}).get("targets", {}).get("wheel", {})
    if dist == META:
        assert wheel.get("bypass-selection") is True
    else:
        assert wheel.get("packages") == ["src/lexigram"], "hatchling cannot infer a namespace"


# --- (b) entry points and import packages load ----------------------------------------------


def _declared_backends() -> list[tuple[str, str, str]]:
    return sorted(
        (dist, name, value)
        for dist, data in PYPROJECTS.items()
        for name, value in data["project"].get("entry-points", {}).get(GROUP, {}).items()
    )


@pytest.mark.parametrize(("dist", "name", "value"), _declared_backends())
def test_backend_entry_point_loads(dist: str, name: str, value: str) -> None:
    installed = [ep for ep in md.entry_points(group=GROUP) if ep.name == name]
    claimants = sorted({ep.dist.name if ep.dist else "?" for ep in installed})
    assert claimants == [dist], f"backend {name!r} is claimed by {claimants}, expected [{dist!r}]"
    (ep,) = installed
    assert ep.value == value, f"installed metadata is stale: {ep.value!r} != {value!r}; reinstall"
    backend = ep.load()
    assert callable(getattr(backend, "create_queue", None)), f"{value} has no create_queue()"


@pytest.mark.parametrize(("dist", "name", "value"), _declared_backends())
def test_declared_url_schemes_are_the_backends_own(dist: str, name: str, value: str) -> None:
    # The schemes a backend declares for import-free URL lookup are its `url_schemes`, and
    # the installed metadata says the same as its pyproject.
    section = PYPROJECTS[dist]["project"].get("entry-points", {}).get(SCHEMES_GROUP, {})
    declared = {scheme for scheme, target in section.items() if target == value}
    installed = {ep.name for ep in md.entry_points(group=SCHEMES_GROUP) if ep.value == value}
    assert installed == declared, f"installed metadata is stale: {installed} != {declared}"
    backend = md.EntryPoint(name, value, GROUP).load()
    assert declared == set(getattr(backend, "url_schemes", ())), (
        f"{dist}: the {SCHEMES_GROUP!r} entry points {sorted(declared)} are not its "
        f"url_schemes {getattr(backend, 'url_schemes', ())}"
    )


@pytest.mark.parametrize(
    ("dist", "package"),
    [(dist, root) for dist, roots in OWNED_ROOTS.items() for root in roots],
)
def test_import_package_imports_from_its_distribution(dist: str, package: str) -> None:
    # Importing a backend first imports lexigram.tasks, the order in which the editable trap bites.
    module = importlib.import_module(package.replace("/", "."))
    assert module.__file__ is not None, f"{package} imported as a namespace package: no __init__.py"
    where = Path(module.__file__).resolve()
    src = (PACKAGES_DIR / dist / "src").resolve()
    from_checkout = src in where.parents
    if INSTALL_MODE == "editable":
        assert from_checkout, f"{package} imported from {where}, not from {src}"
    elif INSTALL_MODE == "wheel":
        assert PACKAGES_DIR.resolve() not in where.parents, f"{package} came from the checkout"
        shipped = {Path(str(md.distribution(dist).locate_file(f))).resolve() for f in _files(dist)}
        assert where in shipped, f"{where} is not a file of the installed {dist} wheel"
    assert md.version(dist) == PYPROJECTS[dist]["project"]["version"], f"stale install of {dist}"


def _files(dist: str) -> list[md.PackagePath]:
    return list(md.distribution(dist).files or [])


# --- (c) lockstep versions -------------------------------------------------------------


def _version() -> str:
    return str(PYPROJECTS[META]["project"]["version"])


def test_versions_are_lockstep() -> None:
    versions = {dist: data["project"].get("version") for dist, data in PYPROJECTS.items()}
    assert len(set(versions.values())) == 1, f"first-party versions differ: {versions}"


def test_meta_pins_the_lockstep_version() -> None:
    project = PYPROJECTS[META]["project"]
    pins = {canonicalize_name(r.name): str(r.specifier) for r in _first_party_requirements(project)}
    assert set(pins) == set(CODE_DISTS) - {"lexigram-contracts-tasks", "lexigram-kernel"}
    assert set(pins.values()) == {f"=={_version()}"}, f"the meta must pin == {_version()}: {pins}"
    extras = project.get("optional-dependencies", {})
    for extra, dist in META_EXTRAS.items():
        assert [canonicalize_name(Requirement(r).name) for r in extras.get(extra, [])] == [dist]
    assert {canonicalize_name(Requirement(r).name) for r in extras.get("all", [])} == set(
        META_EXTRAS.values()
    )


@pytest.mark.parametrize("dist", sorted(FIRST_PARTY))
def test_first_party_ranges_include_the_lockstep_version(dist: str) -> None:
    for req in _first_party_requirements(PYPROJECTS[dist]["project"]):
        assert req.url is None, f"{dist}: {req} must be a version range, not a URL"
        assert req.specifier.contains(_version(), prereleases=True), (
            f"{dist}: {req} excludes the lockstep version {_version()}"
        )
        assert any(s.operator in {"<", "<=", "==", "~="} for s in req.specifier), (
            f"{dist}: {req} needs an upper bound (0.x minors break)"
        )


# --- (d) built wheels ship disjoint files ---------------------------------------------------


def _build_wheels(out: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        try:
            from uv import find_uv_bin  # the uv wheel is optional

            uv = find_uv_bin()
        except ImportError:
            uv = None
    if uv is not None:
        cmd = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out)]
    elif importlib.util.find_spec("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out)]
    else:
        pytest.fail(
            "Cannot build wheels: neither uv nor pip is available here. Install uv, or run "
            "`nox -s wheels`, which builds them and passes LEXIGRAM_WHEELHOUSE.",
            pytrace=False,
        )
    for dist in sorted(FIRST_PARTY):
        subprocess.run([*cmd, str(PACKAGES_DIR / dist)], check=True, timeout=300)


def _wheel_for(wheelhouse: Path, dist: str) -> Path:
    stem = f"{dist.replace('-', '_')}-{_version()}-"
    wheels = sorted(wheelhouse.glob(f"{stem}*.whl"))
    assert len(wheels) == 1, f"expected one {stem}*.whl in {wheelhouse}, found {wheels}"
    return wheels[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheels_ship_disjoint_files(tmp_path: Path) -> None:
    wheelhouse = Path(os.environ.get("LEXIGRAM_WHEELHOUSE") or tmp_path)
    if wheelhouse == tmp_path:
        _build_wheels(tmp_path)
    owner: dict[str, str] = {}
    clashes = []
    for dist in sorted(FIRST_PARTY):
        with zipfile.ZipFile(_wheel_for(wheelhouse, dist)) as wheel:
            names = [n for n in wheel.namelist() if ".dist-info/" not in n]
        if dist == META:
            assert not names, f"the meta wheel must ship no files, ships {names}"
        for name in names:
            assert name.startswith("lexigram/"), f"{dist} ships {name} outside lexigram/"
            assert _parent(name) not in SHARED, f"{dist} ships {name} in a shared level"
            if name in owner:
                clashes.append(f"{name}: {owner[name]} and {dist}")
            owner[name] = dist
        for root in OWNED_ROOTS.get(dist, ()):
            assert f"{root}/__init__.py" in names, f"{dist} wheel lacks {root}/__init__.py"
    assert not clashes, "two wheels ship the same path:\n" + "\n".join(clashes)
