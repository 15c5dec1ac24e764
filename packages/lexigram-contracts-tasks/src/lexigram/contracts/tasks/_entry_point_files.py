"""Installed entry points read from the distributions' own ``entry_points.txt`` files.

`importlib.metadata` imports the `email` package, `zipfile`, `csv` and more before it
answers any question about installed distributions: about 50M instructions, a twelfth of
a PostgreSQL worker's start, where finding a backend needs only a few small text files.
`read_entry_points` reads them where `importlib.metadata.entry_points()` finds them: the
``*.dist-info`` and ``*.egg-info`` directories of each directory on the path, in path
order, the first distribution of a (normalized) name hiding any later one. Its entry
points offer what lexigram reads of the standard ones: ``name``, ``value``, ``group``,
``load()`` and ``dist`` (``name`` and ``version``, read from the METADATA file when asked).

Whatever it does not read itself (a zip file or an egg on the path, a finder on
`sys.meta_path` that lists distributions of its own) makes it ask `importlib.metadata`
instead, so the answer is the same either way.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from importlib import import_module
from importlib.machinery import PathFinder
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

_INFO_SUFFIXES = (".dist-info", ".egg-info")
# What `importlib.metadata.EntryPoint.load` accepts: ``module``, ``module:attr.attr``,
# either followed by ``[extras]`` (which loading ignores).
_OBJECT_REFERENCE = re.compile(r"(?P<module>[\w.]+)\s*(?::\s*(?P<attr>[\w.]+)\s*)?(?:\[.*\]\s*)?$")
_NAME_SEPARATORS = re.compile(r"[-_.]+")


class DistributionInfo(Protocol):
    """What an entry point tells of its distribution (an `importlib.metadata` one fits)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


class InstalledDistribution:
    """A distribution found on the path; its name and version are read on first use.

    Args:
        info_dir: Its ``*.dist-info`` (or ``*.egg-info``) directory.
    """

    __slots__ = ("_headers", "info_dir")

    def __init__(self, info_dir: Path) -> None:
        self.info_dir = info_dir
        self._headers: dict[str, str] | None = None

    @property
    def name(self) -> str:
        """The ``Name`` of its metadata (the directory's name up to the version if none)."""
        return self._header("name") or _name_from_info_dir(self.info_dir.name)

    @property
    def version(self) -> str:
        """The ``Version`` of its metadata, or "" when the metadata has none."""
        return self._header("version")

    def _header(self, key: str) -> str:
        if self._headers is None:
            self._headers = _read_headers(self.info_dir)
        return self._headers.get(key, "")

    def __repr__(self) -> str:
        return f"InstalledDistribution({self.info_dir!r})"


class InstalledEntryPoint:
    """One entry point of an installed distribution.

    Args:
        name: The entry point's name (a backend type, a URL scheme, a plugin's name).
        value: What it names: ``module`` or ``module:attribute``, maybe ``[extras]``.
        group: Its group.
        dist: The distribution that declares it, if known.
    """

    __slots__ = ("dist", "group", "name", "value")

    def __init__(self, name: str, value: str, group: str, dist: DistributionInfo | None) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.dist = dist

    def load(self) -> Any:
        """Import the module the entry point names and return the object it names.

        Raises:
            ValueError: The value is not ``module`` or ``module:attribute``.
            ImportError: The module cannot be imported.
            AttributeError: The module has no such attribute.
        """
        reference = _OBJECT_REFERENCE.match(self.value)
        if reference is None:
            msg = (
                f"entry point {self.name!r} of group {self.group!r} names {self.value!r}, "
                "which is not 'module' or 'module:attribute'"
            )
            raise ValueError(msg)
        found: Any = import_module(reference["module"])
        for attribute in filter(None, (reference["attr"] or "").split(".")):
            found = getattr(found, attribute)
        return found

    def _key(self) -> tuple[str, str, str]:
        return (self.name, self.value, self.group)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstalledEntryPoint):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"InstalledEntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"
        )


class InstalledEntryPoints(tuple[InstalledEntryPoint, ...]):
    """Entry points, in the order the installed distributions list them."""

    __slots__ = ()

    def select(self, *, group: str | None = None, name: str | None = None) -> InstalledEntryPoints:
        """The entry points of `group` and of `name` (either left out: any)."""
        return InstalledEntryPoints(
            point
            for point in self
            if (group is None or point.group == group) and (name is None or point.name == name)
        )

    @property
    def names(self) -> set[str]:
        """The entry points' names."""
        return {point.name for point in self}


def read_entry_points(path: Sequence[str]) -> InstalledEntryPoints:
    """Every entry point of the distributions installed on `path` (normally `sys.path`).

    Returns:
        The entry points, distribution by distribution in the order
        `importlib.metadata.entry_points()` lists them, each distribution's in file order.
    """
    if not _readable_here(path):
        return _from_importlib_metadata()
    points: list[InstalledEntryPoint] = []
    seen: set[str] = set()
    for entry in path:
        try:
            children = list(Path(entry or ".").iterdir())
        except OSError:  # missing, or not a directory (a zip file is not readable here)
            continue
        for info_dir in children:
            if not info_dir.name.lower().endswith(_INFO_SUFFIXES):
                continue
            # importlib.metadata lists one distribution of each name: the first on the path
            normalized = _normalized(_name_from_info_dir(info_dir.name))
            if normalized in seen:
                continue
            seen.add(normalized)
            try:
                content = (info_dir / "entry_points.txt").read_text(encoding="utf-8")
            except OSError:  # no entry points (or not a directory)
                continue
            points.extend(_parse(content, InstalledDistribution(info_dir)))
    return InstalledEntryPoints(points)


def _readable_here(path: Sequence[object]) -> bool:
    """Whether every distribution on `path` lives where `read_entry_points` looks."""
    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return False  # it lists distributions of its own (a zipapp's, a bundler's)
    for entry in path:
        if not isinstance(entry, str) or entry.endswith(".egg") or Path(entry).is_file():
            return False
    return True


def _from_importlib_metadata() -> InstalledEntryPoints:
    from importlib.metadata import entry_points  # noqa: PLC0415 - only where needed

    listed: Any = entry_points()
    # Python 3.11 returns a dict of group -> entry points, whose dict methods warn.
    points = chain.from_iterable(dict.values(listed)) if isinstance(listed, dict) else listed
    return InstalledEntryPoints(
        InstalledEntryPoint(point.name, point.value, point.group, point.dist) for point in points
    )


def _parse(content: str, dist: InstalledDistribution) -> Iterable[InstalledEntryPoint]:
    """The entry points of an ``entry_points.txt`` (INI sections of ``name = value``)."""
    group: str | None = None
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")  # as importlib.metadata reads it
            continue
        name, equals, value = line.partition("=")
        if group is not None and equals:
            yield InstalledEntryPoint(name.strip(), value.strip(), group, dist)


def _name_from_info_dir(directory: str) -> str:
    """``acme_x`` of ``acme_x-1.0.dist-info`` (the name as the directory spells it)."""
    return directory.rpartition(".")[0].partition("-")[0]


def _normalized(name: str) -> str:
    return _NAME_SEPARATORS.sub("_", name).lower()


def _read_headers(info_dir: Path) -> dict[str, str]:
    """The header fields of a distribution's METADATA (PKG-INFO for an egg-info), lower-cased."""
    headers: dict[str, str] = {}
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            with (info_dir / file_name).open(encoding="utf-8") as text:
                for line in text:
                    if not line.strip():
                        break  # the body (the long description) follows the headers
                    key, colon, value = line.partition(":")
                    if colon and not line[0].isspace():
                        headers.setdefault(key.strip().lower(), value.strip())
        except OSError:
            continue
        break
    return headers
