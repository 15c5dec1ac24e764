"""Entry points read from the installed distributions' files (`read_entry_points`): the
same answer as `importlib.metadata`, without importing it."""

from __future__ import annotations

import importlib.metadata
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lexigram.contracts.tasks import InstalledEntryPoint, InstalledEntryPoints
from lexigram.contracts.tasks._entry_point_files import read_entry_points

GROUP = "lexigram.tests.files"


def _listed_by_importlib(group: str) -> list[tuple[str, str, str | None]]:
    return [
        (point.name, point.value, point.dist.name if point.dist else None)
        for point in importlib.metadata.entry_points(group=group)
    ]


def _listed_here(group: str) -> list[tuple[str, str, str | None]]:
    return [
        (point.name, point.value, point.dist.name if point.dist else None)
        for point in read_entry_points(sys.path).select(group=group)
    ]


def _distribution(
    root: Path, name: str, entries: str, *, version: str = "0.1.0", suffix: str = ".dist-info"
) -> Path:
    info = root / f"{name.replace('-', '_')}-{version}{suffix}"
    info.mkdir(parents=True)
    header = "PKG-INFO" if suffix == ".egg-info" else "METADATA"
    (info / header).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\n"
        "Name: not-a-header (the long description)\n"
    )
    (info / "entry_points.txt").write_text(entries)
    return info


@pytest.fixture
def unique() -> str:
    return f"lexi-files-{uuid.uuid4().hex[:8]}"


def test_every_group_of_this_environment_reads_as_importlib_lists_it() -> None:
    groups = {point.group for point in read_entry_points(sys.path)}
    assert "console_scripts" in groups  # pytest's, at least
    for group in groups:
        assert _listed_here(group) == _listed_by_importlib(group), group


def test_the_first_distribution_of_a_name_on_the_path_hides_the_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    _distribution(tmp_path / "first", unique, f"[{GROUP}]\nkept = first:thing\n")
    # the same name spelled otherwise, in a later directory
    later = unique.upper().replace("-", ".")
    _distribution(tmp_path / "second", later, f"[{GROUP}]\nhidden = second:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path / "second"))
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    assert _listed_here(GROUP) == [("kept", "first:thing", unique)]
    assert _listed_here(GROUP) == _listed_by_importlib(GROUP)


def test_sections_comments_and_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    entries = (
        "# a comment\n\n[console_scripts]\nnot-this = x:y\n\n"
        f"[{GROUP}]\n  spaced   =   mod.sub : obj.attr  [extra]\n# = not an entry\nplain=mod\n"
    )
    _distribution(tmp_path, unique, entries)
    monkeypatch.syspath_prepend(str(tmp_path))
    found = read_entry_points(sys.path).select(group=GROUP)
    assert [(point.name, point.value) for point in found] == [
        ("spaced", "mod.sub : obj.attr  [extra]"),
        ("plain", "mod"),
    ]
    assert _listed_here(GROUP) == _listed_by_importlib(GROUP)
    assert found.names == {"spaced", "plain"}
    assert found.select(name="plain") == InstalledEntryPoints(found[1:])


def test_the_distribution_is_read_from_its_metadata_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    _distribution(tmp_path, unique, f"[{GROUP}]\none = m:o\n", version="2.5")
    _distribution(tmp_path, unique + "-egg", f"[{GROUP}]\ntwo = m:o\n", suffix=".egg-info")
    monkeypatch.syspath_prepend(str(tmp_path))
    one, two = sorted(read_entry_points(sys.path).select(group=GROUP), key=lambda p: p.name)
    assert one.dist is not None
    assert (one.dist.name, one.dist.version) == (unique, "2.5")
    assert two.dist is not None
    assert (two.dist.name, two.dist.version) == (unique + "-egg", "0.1.0")


@pytest.fixture
def module_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"lexi_files_mod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("class Outer:\n    class Inner:\n        value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_imports_the_module_and_follows_the_attributes(module_on_path: str) -> None:
    def point(value: str) -> InstalledEntryPoint:
        return InstalledEntryPoint("x", value, GROUP, None)

    module = point(module_on_path).load()
    assert module is sys.modules[module_on_path]
    assert point(f"{module_on_path}:Outer.Inner.value").load() == 42
    assert point(f"{module_on_path} : Outer.Inner [extra]").load() is module.Outer.Inner
    with pytest.raises(AttributeError):
        point(f"{module_on_path}:Missing").load()
    with pytest.raises(ValueError, match="is not 'module' or 'module:attribute'"):
        point("not a reference!").load()


def test_entry_points_compare_by_name_value_and_group() -> None:
    one = InstalledEntryPoint("a", "m:o", GROUP, None)
    assert one == InstalledEntryPoint("a", "m:o", GROUP, object())  # type: ignore[arg-type]
    assert one != InstalledEntryPoint("a", "m:o", GROUP + ".other", None)
    assert len({one, InstalledEntryPoint("a", "m:o", GROUP, None)}) == 1


def test_a_zip_file_on_the_path_is_left_to_importlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    archive = tmp_path / "bundle.zip"
    info = f"{unique.replace('-', '_')}-1.0.dist-info"
    with zipfile.ZipFile(archive, "w") as bundle:
        metadata = f"Metadata-Version: 2.1\nName: {unique}\nVersion: 1.0\n"
        bundle.writestr(f"{info}/METADATA", metadata)
        bundle.writestr(f"{info}/entry_points.txt", f"[{GROUP}]\nzipped = z:thing\n")
    monkeypatch.syspath_prepend(str(archive))
    assert _listed_here(GROUP) == [("zipped", "z:thing", unique)]


def test_a_finder_that_lists_distributions_of_its_own_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    info = _distribution(tmp_path, unique, f"[{GROUP}]\nbundled = b:thing\n")

    class BundleFinder:
        """Like a zipapp's: its distributions are on no path entry."""

        @staticmethod
        def find_spec(*_: Any) -> None:
            return None

        @staticmethod
        def find_distributions(*_: Any, **__: Any) -> list[importlib.metadata.Distribution]:
            return [importlib.metadata.PathDistribution(info)]

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, BundleFinder()])
    assert ("bundled", "b:thing", unique) in _listed_here(GROUP)
