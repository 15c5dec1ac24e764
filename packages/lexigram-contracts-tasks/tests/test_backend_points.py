"""declared_schemes: URL schemes matched to backend types by the object both entry points name."""

from __future__ import annotations

from dataclasses import dataclass

from lexigram.contracts.tasks import BACKENDS_GROUP, URL_SCHEMES_GROUP, declared_schemes


@dataclass(frozen=True)
class Point:
    name: str
    value: str


def test_a_scheme_maps_to_the_types_whose_entry_point_names_its_object() -> None:
    backends = [Point("redis", "pkg.redis:backend"), Point("valkey", "pkg.redis:backend")]
    schemes = [
        Point("REDIS", "pkg.redis:backend"),  # lower-cased
        Point("rediss", "pkg.redis:backend"),
        Point("orphan", "gone:backend"),  # names no installed backend: left out
        Point("redis", "pkg.redis:backend"),  # declared twice: listed once per type
    ]
    assert declared_schemes(backends, schemes) == {
        "redis": ["redis", "valkey"],
        "rediss": ["redis", "valkey"],
    }


def test_no_declared_scheme_gives_an_empty_map() -> None:
    assert declared_schemes([Point("memory", "m:backend")], []) == {}


def test_the_group_names_are_the_ones_backends_register_in() -> None:
    assert BACKENDS_GROUP == "lexigram.tasks.backends"
    assert URL_SCHEMES_GROUP == "lexigram.tasks.url_schemes"
