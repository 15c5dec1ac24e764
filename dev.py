#!/usr/bin/env python3
"""Bootstrap a fresh checkout with nothing but Python 3.11+ (the README's two commands).

    python3 dev.py demo [args...]       run the demo: `lexigram-tasks demo [args...]`
    python3 dev.py test [nox args...]   run every check, exactly as CI does (nox)
    python3 dev.py version [NEW]        print the lockstep version, or move every package to NEW

`demo` and `test` create ./.venv with the standard library's venv when it is missing, so a
system Python (Debian's is "externally managed") is never installed into. They then install what
the command needs into .venv, skipping that step when nothing it depends on has changed, run the
command, and exit with its exit code.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

MIN_PYTHON = (3, 11)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
SUFFIX = ".exe" if os.name == "nt" else ""

# What each command installs into .venv. The demo needs core (with croniter for schedules) and
# its first-party dependencies, all editable. The SQLite backend comes too: the README's
# quickstart then runs `lexigram-tasks worker` and `enqueue` from this .venv, and without it both
# would fall back to the in-memory backend, where the enqueued job dies with its process. The
# checks need only nox, which makes its own venvs.
DEMO_PACKAGES = [
    "lexigram-contracts-tasks",
    "lexigram-kernel",
    "lexigram-tasks-core[cron]",
    "lexigram-tasks-sqlite",
]
TEST_REQUIREMENTS = ["nox>=2024.10.9", "uv>=0.5"]

USAGE = """\
usage: python3 dev.py demo [args...]       run `lexigram-tasks demo` from an editable install
       python3 dev.py test [nox args...]   run the checks with nox (default: CI's sessions)
       python3 dev.py version [NEW]        print the lockstep version, or set it to NEW"""

# Every distribution of the project shares one version. Each packages/*/pyproject.toml keeps it
# as a static `version = "..."` (so that an sdist builds on its own and any tool can read it) and
# pins its first-party dependencies to exactly that version; `dev.py version NEW` rewrites both,
# and tests-integration/packaging fails when they drift apart.
VERSION_LINE = re.compile(r'^version = "([^"]+)"$', re.MULTILINE)
RELEASE = re.compile(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?")


def say(message: str) -> None:
    """Print one progress line."""
    print(f"dev.py: {message}", flush=True)


def fail(message: str, code: int = 1) -> None:
    """Print an error line and exit."""
    print(f"dev.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def executable(name: str) -> Path:
    """Path of a program installed in .venv."""
    return BIN / f"{name}{SUFFIX}"


def ensure_venv() -> Path:
    """Create .venv (stdlib venv, with pip) unless it exists; return its python."""
    python = executable("python")
    if not python.exists():
        say(f"creating {VENV.relative_to(ROOT)} with Python {sys.version.split()[0]}")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as exc:
            fail(
                f"could not create {VENV} ({exc}). On Debian/Ubuntu install the venv module "
                "first (`apt install python3-venv`), delete the half-made .venv, and run again."
            )
    if subprocess.call([python, "-m", "pip", "--version"], stdout=subprocess.DEVNULL) != 0:
        fail(
            f"{VENV} has no pip. Delete it and run again; on Debian/Ubuntu install the venv "
            "module first (`apt install python3-venv`)."
        )
    return python


def install(python: Path, label: str, args: list[str], inputs: list[Path]) -> None:
    """``pip install args`` into .venv unless the same install already succeeded there."""
    digest = hashlib.sha256("\0".join(args).encode())
    for path in inputs:
        digest.update(path.read_bytes())
    stamp = VENV / f".dev-py-{label}.sha256"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest.hexdigest():
        say(f"{label}: .venv is up to date")
        return
    say(f"{label}: installing into .venv: {' '.join(a for a in args if a != '-e')}")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    code = subprocess.call([*pip, *args], cwd=ROOT)
    if code != 0:
        fail(f"pip install failed (exit code {code}); see its output above.", code)
    stamp.write_text(digest.hexdigest(), encoding="utf-8")


def run(command: list[str | Path]) -> int:
    """Run a program from .venv (with .venv/bin first on PATH) and return its exit code."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    say("running " + " ".join(str(part) for part in [Path(command[0]).name, *command[1:]]))
    try:
        code = subprocess.call(command, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130
    # A child killed by signal N reports -N; a shell would report 128 + N.
    return 128 - code if code < 0 else code


def demo(args: list[str]) -> int:
    """Install core and the SQLite backend editable and run `lexigram-tasks demo`."""
    python = ensure_venv()
    editable: list[str] = []
    inputs: list[Path] = []
    for package in DEMO_PACKAGES:
        name = package.split("[", 1)[0]
        editable += ["-e", f"packages/{package}"]
        inputs.append(ROOT / "packages" / name / "pyproject.toml")
    install(python, "demo", editable, inputs)
    program = executable("lexigram-tasks")
    if not program.exists():
        fail(f"{program} was not installed; is [project.scripts] in lexigram-tasks-core intact?")
    return run([program, "demo", *args])


def test(args: list[str]) -> int:
    """Install nox (and uv, which nox uses to build its venvs fast) and run nox."""
    python = ensure_venv()
    install(python, "test", TEST_REQUIREMENTS, [])
    return run([executable("nox"), *args])


def pyprojects() -> dict[str, Path]:
    """The pyproject.toml of every first-party distribution, by distribution name."""
    return {path.parent.name: path for path in sorted(ROOT.glob("packages/*/pyproject.toml"))}


def version(args: list[str]) -> int:
    """Print the lockstep version, or rewrite every version and first-party pin to ``args[0]``."""
    files = pyprojects()
    found = {}
    for name, path in files.items():
        match = VERSION_LINE.search(path.read_text(encoding="utf-8"))
        found[name] = match.group(1) if match else "<no version line>"
    if not args:
        if len(set(found.values())) != 1:
            fail(f"versions differ: {found}; run `python3 dev.py version X.Y.Z` to align them")
        print(next(iter(found.values())))
        return 0
    new = args[0]
    if len(args) != 1 or not RELEASE.fullmatch(new):
        fail(f"expected one version such as 0.3.0, got {' '.join(args)!r}", 2)
    names = "|".join(re.escape(name) for name in files)
    # A first-party requirement, with or without extras, and whatever specifier it had.
    pin = re.compile(rf'"({names})(\[[^\]"]*\])?\s*[<>=~!][^"]*"')
    for path in files.values():
        text = VERSION_LINE.sub(f'version = "{new}"', path.read_text(encoding="utf-8"), count=1)
        text = pin.sub(lambda m: f'"{m.group(1)}{m.group(2) or ""}=={new}"', text)
        path.write_text(text, encoding="utf-8")
        say(f"{path.relative_to(ROOT)}: {new}")
    return 0


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` / ``test`` / ``version``; print usage for anything else."""
    if sys.version_info < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        fail(f"Python {needed}+ is required; this is Python {sys.version.split()[0]}.")
    commands = {"demo": demo, "test": test, "version": version}
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or argv[0] not in commands:
        print(USAGE, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
