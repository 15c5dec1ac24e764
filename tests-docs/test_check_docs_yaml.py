"""The docs checker's yaml rule: every block parses as written; a ``tasks:`` block loads."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import check_docs  # the checker is a script beside this file


def write_page(root: Path, text: str) -> Path:
    path = root / "page.md"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(check_docs, "ROOT", tmp_path)
    # The blocks' own ${VAR}s get example values: nothing from this process may leak in.
    monkeypatch.delenv("REDIS_URL", raising=False)
    return tmp_path


def test_a_placeholder_yaml_cannot_parse_is_reported(root: Path) -> None:
    # The line docs/configuration.md had: a flow sequence cannot start an item with "${".
    page = write_page(
        root,
        """\
        ```yaml
        tasks:
          security:
            verification_keys: [${OLD_SIGNING_KEY}]
        ```
        """,
    )
    ran, fragments, problems = check_docs.check_page(page)
    assert (ran, fragments) == (0, 0)
    assert len(problems) == 1
    assert problems[0].startswith("page.md:1: yaml block failed: not valid YAML")


def test_the_quoted_placeholder_parses_and_validates(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = write_page(
        root,
        """\
        ```yaml
        tasks:
          security:
            signing_key: ${LEXIGRAM_SIGNING_KEY}
            verification_keys: ["${OLD_SIGNING_KEY}"]
          backend:
            type: redis
            url: ${REDIS_URL}
        ```
        """,
    )
    assert check_docs.check_page(page)[2] == []
    assert "ok        page.md:1 (yaml, validated)" in capsys.readouterr().out


def test_a_tasks_block_with_an_unknown_key_fails_validation(root: Path) -> None:
    page = write_page(
        root,
        """\
        ```yaml
        tasks:
          worker:
            worker_cont: 2
        ```
        """,
    )
    problems = check_docs.check_page(page)[2]
    assert len(problems) == 1
    assert "yaml block failed: TaskConfig.from_yaml refuses it" in problems[0]
    assert "worker_cont" in problems[0]


def test_a_fragment_or_a_block_without_tasks_is_only_parsed(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = write_page(
        root,
        """\
        <!-- fragment -->
        ```yaml
        tasks:
          worker:
            worker_cont: 2
        ```

        ```yml
        services:
          redis: {image: redis}
        ```
        """,
    )
    assert check_docs.check_page(page)[2] == []
    out = capsys.readouterr().out
    assert "page.md:2 (yaml, parsed)" in out
    assert "page.md:8 (yaml, parsed)" in out


def test_placeholders_with_a_default_keep_it_and_escapes_are_left_alone() -> None:
    code = "a: ${A}\nb: ${B:-x}\nc: $${C}\nd: ${DATABASE_URL}\n"
    assert check_docs.example_environment(code) == {
        "A": check_docs.EXAMPLE_VALUE,
        "DATABASE_URL": check_docs.EXAMPLE_VALUES["DATABASE_URL"],
    }


def test_every_yaml_block_of_the_docs_passes(tmp_path: Path) -> None:
    # The real pages, yaml only (the python blocks need servers; nox -s docs runs them).
    problems = []
    for page in check_docs.default_pages():
        for number, block in enumerate(check_docs.blocks_of(page), 1):
            if block.lang in check_docs.YAML_LANGS:
                _, problem = check_docs.check_yaml_block(block, tmp_path, number)
                if problem is not None:
                    problems.append(f"{block.where}: {problem}")
    assert problems == []
