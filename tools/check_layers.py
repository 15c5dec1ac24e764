"""Check the import layering of the distributions under ``packages/`` (no dependencies).

The rules, one per layer:

* contracts (``lexigram-contracts-tasks``) import nothing first-party but themselves;
* the kernel (``lexigram-kernel``) imports nothing of tasks (neither the contracts of
  tasks nor ``lexigram.tasks``);
* a backend (any ``lexigram-tasks-<name>`` whose source is ``lexigram/tasks/backends/
  <name>``) imports only the contracts and itself: never the core, never another backend;
* the core (``lexigram-tasks-core``) imports no backend but its built-in ``memory`` one.

Every ``import``/``from ... import`` counts, also under ``if TYPE_CHECKING:`` and inside
functions. Prints one line per violation (file:line, the import, the rule) and exits 1;
prints a one-line summary and exits 0 when the tree is clean.

Usage: ``python tools/check_layers.py [ROOT]`` (ROOT defaults to the repository).
"""

# A script run by path (``nox -s lint``), not a package; printing is its output.
# ruff: noqa: INP001, T201

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIRST_PARTY = "lexigram"
CONTRACTS = "lexigram.contracts"
TASKS = "lexigram.tasks"
TASK_CONTRACTS = "lexigram.contracts.tasks"
BACKENDS = "lexigram.tasks.backends"
CORE_BACKEND = "memory"


@dataclass(frozen=True, slots=True)
class Violation:
    """One import that breaks a rule."""

    path: Path
    line: int
    imported: str
    rule: str

    def render(self, root: Path) -> str:
        """``path:line: imports name (rule)``, the path relative to `root`."""
        where = self.path.relative_to(root) if self.path.is_relative_to(root) else self.path
        return f"{where}:{self.line}: imports {self.imported} ({self.rule})"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(src: Path, path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute module name) for every import in the file at `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(src, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # ``from lexigram.tasks import hooks`` imports the submodule lexigram.tasks.hooks.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _rule_for(distribution: str, src: Path) -> tuple[str, str | None] | None:
    """(layer, backend name or None) of a distribution, or None when no rule applies."""
    if distribution == "lexigram-contracts-tasks":
        return "contracts", None
    if distribution == "lexigram-kernel":
        return "kernel", None
    if distribution == "lexigram-tasks-core":
        return "core", None
    backends = src / "lexigram" / "tasks" / "backends"
    if backends.is_dir():
        names = [p.name for p in backends.iterdir() if p.is_dir() and p.name != "__pycache__"]
        if len(names) == 1:
            return "backend", names[0]
    return None


def _backend_rule(own: str, name: str) -> str | None:
    if _within(name, CONTRACTS) or _within(name, f"{BACKENDS}.{own}"):
        return None
    if name in {FIRST_PARTY, TASKS, BACKENDS}:
        return None  # the namespace packages themselves
    if _within(name, BACKENDS):
        return f"backend {own!r} imports no other backend"
    return f"backend {own!r} imports only lexigram.contracts, never the core"


def _core_rule(name: str) -> str | None:
    if not _within(name, BACKENDS) or name == BACKENDS:
        return None
    backend = name.removeprefix(BACKENDS + ".").split(".")[0]
    if backend == CORE_BACKEND:
        return None
    return f"the core names no backend (imports {BACKENDS}.{backend})"


def _check(layer: str, own: str | None, name: str) -> str | None:
    """The rule `name` breaks for a module of `layer`, or None."""
    rule: str | None = None
    if not _within(name, FIRST_PARTY):
        rule = None
    elif layer == "contracts" and not _within(name, CONTRACTS):
        rule = "the contracts import nothing first-party"
    elif layer == "kernel" and (_within(name, TASKS) or _within(name, TASK_CONTRACTS)):
        rule = "the kernel imports nothing of tasks"
    elif layer == "backend" and own is not None:
        rule = _backend_rule(own, name)
    elif layer == "core":
        rule = _core_rule(name)
    return rule


def check(root: Path) -> list[Violation]:
    """Return every layering violation under ``root/packages``."""
    found: list[Violation] = []
    for dist in sorted((root / "packages").iterdir()):
        src = dist / "src"
        rule = _rule_for(dist.name, src) if src.is_dir() else None
        if rule is None:
            continue
        layer, own = rule
        for path in sorted(src.rglob("*.py")):
            for line, name in imports_of(src, path):
                broken = _check(layer, own, name)
                if broken is not None:
                    found.append(Violation(path, line, name, broken))
    # ``from x import y`` yields both x and x.y; report each line once.
    unique: dict[tuple[Path, int], Violation] = {}
    for violation in found:
        unique.setdefault((violation.path, violation.line), violation)
    return list(unique.values())


def main(argv: list[str]) -> int:
    """Run the check; print the violations; return the exit code."""
    root = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parents[1]
    violations = check(root)
    for violation in violations:
        print(violation.render(root))
    if violations:
        print(f"layering: {len(violations)} forbidden import(s).")
        return 1
    print("layering: contracts, kernel, core and backends import only what they may.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
