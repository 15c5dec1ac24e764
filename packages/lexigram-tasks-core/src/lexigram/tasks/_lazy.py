"""Names a package re-exports but imports only when first looked up.

A package that re-exports many modules makes everyone who imports one name pay for all of
them: the CLI worker would import the application container, the dashboard, the queue-
driven workflows and the domain events at every start without using them. A package
lists its names once, in an ``if TYPE_CHECKING:`` import block that type checkers read,
and assigns `lazy_exports` to its ``__getattr__``; `from package import name` then imports
the module that defines `name`, once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import each name where it lives.

    The names and their modules are the package's ``if TYPE_CHECKING:`` import block
    (`type_checking_imports`), read once, on the first lookup.

    Args:
        package: The ``__name__`` of the package that re-exports the names.

    Returns:
        ``(__getattr__, __dir__)``, for the package to assign to those names. A looked-up
        name is stored in the package, so later lookups do not come back here.
    """
    namespace = sys.modules[package].__dict__
    found: list[dict[str, str]] = []

    def names() -> dict[str, str]:
        if not found:
            found.append(type_checking_imports(namespace["__file__"]))
        return found[0]

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module's attribute hook
        home = names().get(name)
        if home is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(home, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807 - a module's attribute hook
        return sorted(set(namespace) | set(names()))

    return __getattr__, __dir__


def type_checking_imports(source: str) -> dict[str, str]:
    """Each name imported under the module's ``if TYPE_CHECKING:`` and the module it is from.

    For a package whose type-checking import block is its one list of public names. It
    reads the block as ruff formats it (``from x import a, b`` on one line, or one name
    per line between ``from x import (`` and ``)``), without ``ast``: parsing the whole
    file on the first lookup of a name cost every worker start about a millisecond.
    """
    found: dict[str, str] = {}
    inside = False
    module: str | None = None
    with open(source, encoding="utf-8") as file:  # noqa: PTH123 - pathlib is not loaded yet
        lines = file.read().splitlines()
    for raw in lines:
        line = raw.strip()
        if not inside:
            inside = raw.startswith("if TYPE_CHECKING:")
            continue
        if raw and not raw[0].isspace():
            break  # the block ended
        if module is not None:  # inside "from x import ("
            if line == ")":
                module = None
            elif line:
                found[line.rstrip(",").split(" as ")[0]] = module
            continue
        if line.startswith("from ") and " import " in line:
            head, _, names = line[len("from ") :].partition(" import ")
            if names == "(":
                module = head
            else:
                for name in names.split(","):
                    found[name.strip().split(" as ")[0]] = head
    return found
