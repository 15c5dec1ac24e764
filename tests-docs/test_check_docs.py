"""The docs checker: which blocks it runs, which it skips, which it writes as files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import check_docs  # the checker is a script beside this file

PAGE = """\
# A page

```python
print("runs")
```

<!-- fragment -->
```python
await not_run()
```

<!-- file: app.yaml -->
```yaml
tasks: {}
```

```console
$ lexigram-tasks --help
```

1. A list item with a block:

   ```python
   import pathlib
   print(pathlib.Path("app.yaml").read_text().strip())
   ```
"""


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(check_docs, "ROOT", tmp_path)
    path = tmp_path / "page.md"
    path.write_text(PAGE, encoding="utf-8")
    return path


def test_blocks_carry_language_markers_and_dedented_code(page: Path) -> None:
    blocks = check_docs.blocks_of(page)
    assert [(b.lang, b.fragment, b.file_name) for b in blocks] == [
        ("python", False, None),
        ("python", True, None),
        ("yaml", False, "app.yaml"),
        ("console", False, None),
        ("python", False, None),
    ]
    assert blocks[4].code.startswith("import pathlib\n")
    assert blocks[0].where == "page.md:3"


def test_check_page_runs_python_blocks_with_the_page_files_and_skips_fragments(
    page: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran, fragments, problems = check_docs.check_page(page)
    assert (ran, fragments, problems) == (2, 1, [])
    out = capsys.readouterr().out
    assert "fragment  page.md:8" in out


def test_a_failing_block_and_a_broken_link_are_reported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(check_docs, "ROOT", tmp_path)
    path = tmp_path / "bad.md"
    path.write_text(
        textwrap.dedent(
            """\
            See [nothing](missing.md).

            ```python
            raise SystemExit("this example is broken")
            ```
            """
        ),
        encoding="utf-8",
    )
    ran, fragments, problems = check_docs.check_page(path)
    assert (ran, fragments) == (1, 0)
    assert problems[0] == "bad.md: broken link 'missing.md'"
    assert problems[1].startswith("bad.md:3: python block failed: exit code 1")
    assert "this example is broken" in problems[1]
