"""Backend entry points: URL schemes matched to backend types by the object both entry
points name (`declared_schemes`), and every group read in one listing
(`installed_entry_points`)."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    declared_schemes,
    forget_installed_entry_points,
    installed_entry_points,
    scheme_claims,
)


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


GROUP = "lexigram.tests.points"


def _write_distribution(root: Path, entries: str) -> str:
    """A distribution found on `root` with `entries` in GROUP; returns its name."""
    name = f"lexi-points-{uuid.uuid4().hex[:8]}"
    info = root / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entries}")
    return name


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many times the installed distributions are listed."""
    calls: list[int] = []
    backend_points = importlib.import_module("lexigram.contracts.tasks._backend_points")
    real = backend_points.read_entry_points

    def counting(path: tuple[str, ...]) -> object:
        calls.append(1)
        return real(path)

    monkeypatch.setattr(backend_points, "read_entry_points", counting)
    forget_installed_entry_points()
    yield calls
    forget_installed_entry_points()


def test_every_group_comes_from_one_listing(
    listings: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_distribution(tmp_path, "one = points_one:thing\ntwo = points_two:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_entry_points(group=GROUP).names == {"one", "two"}
    assert not installed_entry_points(group=URL_SCHEMES_GROUP + ".none")
    (two,) = installed_entry_points(group=GROUP, name="two")
    assert two.value == "points_two:thing"
    assert len(listings) == 1


def test_a_distribution_put_on_the_path_is_found(
    listings: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not installed_entry_points(group=GROUP)
    _write_distribution(tmp_path, "alpha = points_alpha:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = installed_entry_points(group=GROUP)
    assert [(point.name, point.value) for point in found] == [("alpha", "points_alpha:thing")]
    assert len(listings) == 2


def test_one_installed_into_a_listed_directory_is_found_once_forgotten(
    listings: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not installed_entry_points(group=GROUP)
    _write_distribution(tmp_path, "beta = points_beta:thing\n")
    importlib.invalidate_caches()  # the path finder caches directory listings
    assert not installed_entry_points(group=GROUP)  # the listing is kept...
    forget_installed_entry_points()
    assert installed_entry_points(group=GROUP).names == {"beta"}  # ...until forgotten
    assert len(listings) == 2


class UndeclaredSchemes:
    """The ``url_schemes`` of backends that declare none, recording which were read."""

    def __init__(self, **schemes: tuple[str, ...]) -> None:
        self.schemes = schemes
        self.read: list[str] = []

    def __call__(self, type_: str) -> tuple[str, ...]:
        self.read.append(type_)
        return self.schemes.get(type_, ())


def test_a_scheme_that_is_a_type_name_selects_that_type_alone() -> None:
    undeclared = UndeclaredSchemes(other=("redis",))
    claims = scheme_claims("REDIS", ["redis", "other"], {"redis": ["other"]}, undeclared)
    assert claims == ["redis"]
    assert undeclared.read == []  # nothing imported


def test_declared_claims_come_first_and_undeclared_types_are_asked() -> None:
    undeclared = UndeclaredSchemes(legacy=("kv", "kvs"), silent=())
    declared = {"kv": ["modern"], "other": ["elsewhere"]}
    claims = scheme_claims("kv", ["modern", "elsewhere", "legacy", "silent"], declared, undeclared)
    assert claims == ["modern", "legacy"]  # a conflict for the caller to report
    assert undeclared.read == ["legacy", "silent"]  # only the types that declare nothing


def test_no_backend_serves_the_scheme() -> None:
    assert scheme_claims("nope", ["a"], {}, UndeclaredSchemes(a=("x",))) == []
