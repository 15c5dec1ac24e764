"""The lazy re-exports of the packages: every listed name loads, and the lists are right."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from lexigram.tasks._lazy import type_checking_imports

# Every package that re-exports names through `lazy_exports`.
LAZY_PACKAGES = (
    "lexigram.tasks",
    "lexigram.tasks.di",
    "lexigram.tasks.events",
    "lexigram.tasks.hooks",
    "lexigram.tasks.observability",
    "lexigram.tasks.workflows",
)


def _imports_by_ast(path: str) -> dict[str, str]:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    found.update(dict.fromkeys((a.name for a in stmt.names), stmt.module))
    return found


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_the_line_reader_finds_what_python_parses(package: str) -> None:
    path = importlib.import_module(package).__file__
    assert path is not None
    found = type_checking_imports(path)
    assert found == _imports_by_ast(path)
    assert found  # every lazy package lists its names for type checkers


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_name_of_all_loads_from_where_type_checkers_look(package: str) -> None:
    module = importlib.import_module(package)
    checked = type_checking_imports(str(module.__file__))
    for name in module.__all__:
        value = getattr(module, name)
        home = checked.get(name)
        if home is not None:  # names defined in the package itself are not re-exports
            assert value is getattr(importlib.import_module(home), name), name
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_an_unknown_name_is_an_attribute_error_naming_it(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'Nope'"):
        _ = module.Nope


def test_a_looked_up_name_stays_in_the_package() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import lexigram.tasks.workflows as w\n"
                "print('JobChain' in vars(w))\n"
                "w.JobChain\n"
                "print('JobChain' in vars(w))\n"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["False", "True"]


def test_a_parenthesised_block_and_aliases_are_read(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n"
        "    __version__: str\n\n"
        "    from a.b import (\n"
        "        One,\n"
        "        Two,\n"
        "    )\n"
        "    from c import Three as Three, four\n\n"
        "from d import Five\n",
        encoding="utf-8",
    )
    assert type_checking_imports(str(source)) == {
        "One": "a.b",
        "Two": "a.b",
        "Three": "c",
        "four": "c",
    }
