"""Backend entry points: URL schemes matched to backend types by the object both entry
points name (`declared_schemes`), and every group read in one listing
(`installed_entry_points`)."""

from __future__ import annotations

import importlib
import importlib.metadata
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
    real = importlib.metadata.entry_points

    def counting() -> object:
        calls.append(1)
        return real()

    backend_points = importlib.import_module("lexigram.contracts.tasks._backend_points")
    monkeypatch.setattr(backend_points, "entry_points", counting)
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
