"""Run every ```python block of README.md and docs/**/*.md as written; check YAML and links.

Usage: ``python tests-docs/check_docs.py [PAGE ...]`` (``nox -s docs`` runs it on every page).

Rules a page follows (docs/development.md, "Documentation"):

- Each ```python block runs as written, as a script, in a fresh Python process whose working
  directory is a new temporary directory for its page; it fails when the process exits non-zero
  or takes longer than 120 s. Blocks that need Redis, PostgreSQL or RabbitMQ use them at the
  addresses they name (CI has all three on localhost).
- A block preceded by the line ``<!-- fragment -->`` is not run: an excerpt, an API listing, or
  code that needs something the page only describes.
- A block of any language preceded by ``<!-- file: NAME -->`` is also written to NAME in the
  page's directory before any block runs, so a page can show ``application.yaml`` or a
  ``myapp/tasks.py`` module and then use it.
- Each ```yaml block must parse with ``yaml.safe_load`` as written, as the configuration loader
  reads a file: it parses first and replaces ``${VAR}`` placeholders in the parsed strings
  afterwards, so a placeholder where YAML does not allow one (``[${KEY}]``) fails here as it
  would for a user. A block whose top level has a ``tasks:`` mapping is then loaded with
  ``TaskConfig.from_yaml``, every ``${VAR}`` without a default set to an example value
  (`EXAMPLE_VALUES`) and ``LEX_TASKS__*`` variables ignored, so each key and value is checked;
  loading connects to nothing. ``<!-- fragment -->`` before a yaml block leaves only the parse.
- Relative links must point at files that exist.

Prints one line per block and a summary; exits 1 when a block or a link fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w+-]*)[^\n]*$")
FRAGMENT = "<!-- fragment -->"
FILE_MARK = re.compile(r"^ *<!-- file: (?P<name>[\w./-]+) -->$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
TIMEOUT = 120.0
YAML_LANGS = frozenset({"yaml", "yml"})
# The configuration loader's placeholder: ${VAR} or ${VAR:-default} ($${...} is a literal).
PLACEHOLDER = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:-[^}]*)?\}")
# What a ${VAR} without a default stands for while a yaml block is validated: a URL of the
# backend a variable of that name usually points at, else a placeholder long enough for any
# key or password check.
EXAMPLE_VALUES = {
    "REDIS_URL": "redis://localhost:6379/0",
    "AMQP_URL": "amqp://guest:guest@localhost:5672/",
    "DATABASE_URL": "postgresql://app@localhost:5432/app",
}
EXAMPLE_VALUE = "example-value-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    fragment: bool
    file_name: str | None

    @property
    def where(self) -> str:
        """``page:line`` of the block's opening fence."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def default_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks_of(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker on the line before its fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent = len(match.group("indent"))
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1  # past the closing fence
        before = lines[start - 1].strip() if start > 0 else ""
        file_mark = FILE_MARK.match(before)
        found.append(
            Block(
                page=page,
                line=start + 1,
                lang=match.group("lang").lower(),
                code="\n".join(body) + "\n",
                fragment=before == FRAGMENT,
                file_name=file_mark.group("name") if file_mark else None,
            )
        )
    return found


def broken_links(page: Path) -> list[str]:
    """Relative links of ``page`` that point at nothing."""
    problems = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        external = "://" in path or path.startswith("mailto:")
        if path and not external and not (page.parent / path).exists():
            problems.append(f"{page.relative_to(ROOT)}: broken link {target!r}")
    return problems


def run_block(block: Block, workdir: Path, number: int) -> tuple[bool, str, float]:
    """Run one python block in a fresh process; (passed, output tail, seconds)."""
    script = workdir / f"_block_{number}.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, script.name],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else exc.stderr
        return False, f"timed out after {TIMEOUT:g} s\n{output or ''}", TIMEOUT
    seconds = time.monotonic() - started
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        return False, f"exit code {result.returncode}\n{output}", seconds
    return True, output, seconds


def example_environment(code: str) -> dict[str, str]:
    """A value for every ``${VAR}`` of `code` without a default (those with one keep it)."""
    return {
        match.group("name"): EXAMPLE_VALUES.get(match.group("name"), EXAMPLE_VALUE)
        for match in PLACEHOLDER.finditer(code)
        if match.group("default") is None
    }


def check_yaml_block(block: Block, workdir: Path, number: int) -> tuple[str, str | None]:
    """Parse one yaml block; load it as configuration when it has a ``tasks:`` mapping.

    Returns:
        What was checked (``parsed`` or ``validated``), and the problem or None.
    """
    # Imported here: only pages with yaml blocks need PyYAML and the package.
    import yaml  # noqa: PLC0415

    try:
        document = yaml.safe_load(block.code)
    except yaml.YAMLError as exc:
        return "parsed", f"not valid YAML: {' '.join(str(exc).split())}"
    tasks = document.get("tasks") if isinstance(document, dict) else None
    if block.fragment or not isinstance(tasks, dict):
        return "parsed", None
    from lexigram.contracts.tasks import TaskConfigurationError  # noqa: PLC0415
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415

    path = workdir / f"_block_{number}.yaml"
    path.write_text(block.code, encoding="utf-8")
    environ = example_environment(block.code)
    try:
        TaskConfig.from_yaml(path, environ=environ, env_override=False)
    except TaskConfigurationError as exc:
        return "validated", f"TaskConfig.from_yaml refuses it: {exc}"
    return "validated", None


def check_page(page: Path) -> tuple[int, int, list[str]]:
    """Run the python blocks of one page; (blocks run, fragments, problems)."""
    blocks = blocks_of(page)
    problems = broken_links(page)
    ran = fragments = 0
    with tempfile.TemporaryDirectory(prefix="lexigram-docs-") as tmp:
        workdir = Path(tmp)
        for block in blocks:
            if block.file_name is not None:
                target = workdir / block.file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code, encoding="utf-8")
        for number, block in enumerate(blocks, 1):
            if block.lang in YAML_LANGS:
                checked, problem = check_yaml_block(block, workdir, number)
                status = "ok" if problem is None else "FAILED"
                print(f"{status:<9} {block.where} (yaml, {checked})", flush=True)
                if problem is not None:
                    problems.append(f"{block.where}: yaml block failed: {problem}")
                continue
            if block.lang != "python":
                continue
            if block.fragment:
                fragments += 1
                print(f"fragment  {block.where}", flush=True)
                continue
            ran += 1
            passed, output, seconds = run_block(block, workdir, number)
            status = "ok" if passed else "FAILED"
            print(f"{status:<9} {block.where} ({seconds:.1f} s)", flush=True)
            if not passed:
                tail = "\n".join(output.splitlines()[-25:])
                problems.append(f"{block.where}: python block failed: {tail}")
    return ran, fragments, problems


def main(argv: list[str] | None = None) -> int:
    """Check the pages given (default: all); print a summary; 0 when nothing failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", type=Path, help="pages to check (default: all)")
    args = parser.parse_args(argv)
    pages = [p.resolve() for p in args.pages] or default_pages()
    total_ran = total_fragments = 0
    problems: list[str] = []
    for page in pages:
        ran, fragments, page_problems = check_page(page)
        total_ran += ran
        total_fragments += fragments
        problems += page_problems
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    failed = sum(1 for p in problems if "python block failed" in p)
    yaml_failed = sum(1 for p in problems if "yaml block failed" in p)
    print(
        f"\ndocs: {len(pages)} pages, {total_ran} python blocks run, {failed} failed, "
        f"{total_fragments} fragments; {yaml_failed} yaml block(s) failed; "
        f"{len(problems) - failed - yaml_failed} other problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
