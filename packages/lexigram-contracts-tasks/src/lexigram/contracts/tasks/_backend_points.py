"""How an installed backend is found without importing it: its entry-point groups.

A backend distribution registers its backend object under its type name in
`BACKENDS_GROUP`, and may declare the URL schemes it serves in `URL_SCHEMES_GROUP`: one
entry point per scheme, naming the same object. `declared_schemes` pairs the two by that
object, so a URL finds its backend's type with nothing imported. The core resolves a
backend URL this way, and so does a backend that borrows another's stores (RabbitMQ's
``stores`` option).

Both read the groups through `installed_entry_points`: listing any one group reads the
entry points of every installed distribution (a file each), and a worker's start asks
for three groups (backends, URL schemes, plugins), four with RabbitMQ's ``stores``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from lexigram.contracts.tasks._entry_point_files import InstalledEntryPoints, read_entry_points

BACKENDS_GROUP = "lexigram.tasks.backends"
"""Entry-point group in which backends register, by type name."""

URL_SCHEMES_GROUP = "lexigram.tasks.url_schemes"
"""Entry-point group in which backends may declare their URL schemes (name: a scheme)."""


class _EntryPoint(Protocol):
    """What `declared_schemes` reads of an `importlib.metadata.EntryPoint`."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...


def declared_schemes(
    backends: Iterable[_EntryPoint], schemes: Iterable[_EntryPoint]
) -> dict[str, list[str]]:
    """Map each declared URL scheme to the backend types that declare it.

    Args:
        backends: The entry points of `BACKENDS_GROUP` (type name -> backend object).
        schemes: The entry points of `URL_SCHEMES_GROUP` (scheme -> backend object).

    Returns:
        Lower-cased scheme -> the types whose backend entry point names the object its
        scheme entry point names, in the order the backends were listed. A scheme that
        names no listed backend is left out; nothing is imported.
    """
    types_of: dict[str, list[str]] = {}
    for point in backends:
        types_of.setdefault(point.value, []).append(point.name)
    declared: dict[str, list[str]] = {}
    for point in schemes:
        for type_ in types_of.get(point.value, ()):
            claims = declared.setdefault(point.name.lower(), [])
            if type_ not in claims:
                claims.append(type_)
    return declared


def scheme_claims(
    scheme: str,
    installed: Collection[str],
    declared: Mapping[str, Sequence[str]],
    undeclared_schemes: Callable[[str], Iterable[str]],
) -> list[str]:
    """The installed backend types that serve URLs of `scheme`, as every lookup decides it.

    A scheme that is itself an installed type's name selects that type alone. Otherwise the
    types that declare the scheme in `URL_SCHEMES_GROUP` claim it, and so does each type
    that declares no scheme there and lists it in its backend's ``url_schemes`` (which
    `undeclared_schemes` reads, importing that backend). More than one claim is a conflict
    for the caller to report; none means no installed backend serves the scheme.

    Args:
        scheme: The URL's scheme (any case).
        installed: The installed backend types to consider.
        declared: `declared_schemes` of those types' entry points.
        undeclared_schemes: A type's ``url_schemes``, lower-cased (called only for the
            types that declare none).

    Returns:
        The claiming types: declared ones first, in `declared`'s order.
    """
    scheme = scheme.lower()
    if scheme in installed:
        return [scheme]
    declaring = {type_ for types in declared.values() for type_ in types}
    claims = [type_ for type_ in declared.get(scheme, ()) if type_ in installed]
    claims += [
        type_
        for type_ in installed
        if type_ not in declaring and scheme in undeclared_schemes(type_)
    ]
    return claims


# Every group's entry points, with the `sys.path` they were read under.
_listing: tuple[tuple[str, ...], InstalledEntryPoints] | None = None


def installed_entry_points(*, group: str, name: str | None = None) -> InstalledEntryPoints:
    """The installed entry points of `group` (only `name`'s if given), read once.

    Every group comes from one reading of the installed distributions per process, so a
    second group costs no second pass over them. A change of `sys.path` (a distribution
    put on the path while the process runs) reads them again; one installed into a
    directory already on the path is found after `forget_installed_entry_points`.

    Args:
        group: The entry-point group, e.g. `BACKENDS_GROUP`.
        name: Only the entry points of this name.

    Returns:
        The entry points, in the order `importlib.metadata.entry_points` lists them
        (read without importing it: see `read_entry_points`).
    """
    global _listing  # noqa: PLW0603 - one listing per process (and sys.path)
    path = tuple(sys.path)
    if _listing is None or _listing[0] != path:
        _listing = (path, read_entry_points(path))
    found = _listing[1].select(group=group)
    return found if name is None else found.select(name=name)


def forget_installed_entry_points() -> None:
    """Read the installed entry points again on the next `installed_entry_points` call."""
    global _listing  # noqa: PLW0603 - see installed_entry_points
    _listing = None
