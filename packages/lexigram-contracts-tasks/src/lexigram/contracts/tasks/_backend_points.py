"""How an installed backend is found without importing it: its entry-point groups.

A backend distribution registers its backend object under its type name in
`BACKENDS_GROUP`, and may declare the URL schemes it serves in `URL_SCHEMES_GROUP`: one
entry point per scheme, naming the same object. `declared_schemes` pairs the two by that
object, so a URL finds its backend's type with nothing imported. The core resolves a
backend URL this way, and so does a backend that borrows another's stores (RabbitMQ's
``stores`` option).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = ["BACKENDS_GROUP", "URL_SCHEMES_GROUP", "declared_schemes"]

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
