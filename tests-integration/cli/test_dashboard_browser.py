"""The dashboard in a real browser (headless Chromium), on Redis and on PostgreSQL.

A real ``lexigram-tasks worker`` process runs the jobs and a real ``lexigram-tasks
dashboard`` process serves the pages. The test watches a running job's progress bar
advance, clicks Retry on a dead-lettered job and checks in the backend that the job
then completes, and saves screenshots (under ``$LEXIGRAM_ARTIFACTS`` when set, else
pytest's temporary directory; the path is printed).

The browser is the system's (``apt-get install chromium chromium-driver``) driven by
Selenium through the system chromedriver; nothing is downloaded. Without it the tests
are skipped, or fail when ``LEXIGRAM_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobResult, TaskBackendSpec
from lexigram.tasks.cli._context import (
    load_config,
    open_queue,
    open_stores,
    release_backend,
    resolve_spec,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE_VAR = "LEXIGRAM_REQUIRE_SERVICES"

APP = """
import asyncio
import os

from lexigram.tasks import ProgressTracker, task


@task(name="dash_slow")
async def dash_slow(steps: int, progress: ProgressTracker) -> int:
    for step in range(1, steps + 1):
        await progress.update(step, steps, f"step {step}")
        await asyncio.sleep(0.4)
    return steps


@task(name="dash_flaky", max_retries=0)
async def dash_flaky(marker: str) -> str:
    if not os.path.exists(marker):
        raise RuntimeError("the marker file is missing")
    return "recovered"
"""


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(
            f"{reason} ({REQUIRE_VAR}=1). Install it: apt-get install chromium chromium-driver"
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through the system chromedriver (one for the module)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        _unavailable(f"no system browser: {CHROMIUM} and {CHROMEDRIVER} are needed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    # An explicit driver path: Selenium Manager has nothing to look up or download.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = os.environ.get("LEXIGRAM_ARTIFACTS")
    base = Path(root) if root else tmp_path
    path = base / "dashboard-screenshots" / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {path}")  # noqa: T201 - where the artefacts are
    return path


def _wait(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"{what} did not happen within {timeout} s"
            raise AssertionError(msg)
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our server
            return bool(response.status == 200)
    except OSError:
        return False


def _spec(config: Path) -> TaskBackendSpec:
    return resolve_spec(load_config(str(config)))


async def _enqueue(spec: TaskBackendSpec, job: Job) -> None:
    queue = open_queue(spec)
    try:
        await queue.enqueue(job)
    finally:
        await queue.close()
        await release_backend(spec)


async def _dead_ids(spec: TaskBackendSpec) -> set[str]:
    stores = open_stores(spec, "dlq_backend")
    try:
        return {str(d["job_id"]) for d in await stores.dlq_backend.list_all()}
    finally:
        await stores.close()
        await release_backend(spec)


async def _result(spec: TaskBackendSpec, job_id: str) -> JobResult | None:
    stores = open_stores(spec, "result_store")
    try:
        found: JobResult | None = await stores.result_store.get(job_id)
        return found
    finally:
        await stores.close()
        await release_backend(spec)


@pytest.mark.parametrize("config_fixture", ["redis_config", "pg_config"])
def test_the_dashboard_shows_live_progress_and_retries_a_dead_letter(  # noqa: PLR0917
    config_fixture: str,
    request: pytest.FixtureRequest,
    browser: Any,
    artifacts: Path,
    write_app: Callable[[str], str],
    cli_process: Callable[..., Any],
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    from selenium.webdriver.common.by import By

    config: Path = request.getfixturevalue(config_fixture)
    spec = _spec(config)
    app = write_app(APP)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = cli_process(
        "worker", app, "--config", str(config), "--concurrency", "4", "--log-level", "info"
    )
    dashboard = cli_process("dashboard", "--config", str(config), "--port", str(port))
    dashboard.wait_for(r"Dashboard for .* on http://127\.0\.0\.1:\d+/")
    worker.wait_for(r"consuming jobs")
    _wait(lambda: _answers(f"{base}/"), "the dashboard answering")

    marker = tmp_path / "flaky-may-succeed"
    flaky = Job(name="dash_flaky", args=(str(marker),), queue_name="jobs", max_retries=0)
    asyncio.run(_enqueue(spec, flaky))
    _wait(lambda: flaky.id in asyncio.run(_dead_ids(spec)), "the flaky job's dead-lettering")
    slow = Job(name="dash_slow", args=(20,), queue_name="jobs")
    asyncio.run(_enqueue(spec, slow))

    # The overview: real data, and a progress bar the page's script keeps moving.
    browser.get(f"{base}/")
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="jobs"]')
    _wait(
        lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-worker]"),
        "the worker's row",
    )

    def bar_value() -> float | None:
        # Read in the page in one step: the script swaps the fragment every 1.5 s.
        value = browser.execute_script(
            "var bar = document.getElementById(arguments[0]);"
            "return bar ? bar.getAttribute('value') : null;",
            f"progress-{slow.id}",
        )
        return float(value) if value else None

    first = _wait(bar_value, "the slow job's progress bar")
    assert flaky.id in browser.find_element(By.ID, "failures").text
    browser.save_screenshot(str(artifacts / "overview.png"))
    second = _wait(lambda: (v := bar_value()) is not None and v > first and v, "the bar advancing")
    assert second > first
    browser.save_screenshot(str(artifacts / "overview-later.png"))

    # The job's page.
    browser.get(f"{base}/jobs/{slow.id}")
    assert "dash_slow" in browser.find_element(By.CSS_SELECTOR, "dl.fields").text
    browser.save_screenshot(str(artifacts / "job.png"))

    # Retry the dead letter by clicking its row's button; now the job can succeed.
    marker.write_text("ok")
    browser.get(f"{base}/dlq")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{flaky.id}"]')
    browser.save_screenshot(str(artifacts / "dlq.png"))
    row.find_element(By.CSS_SELECTOR, "button.retry-one").click()
    notice = _wait(lambda: browser.find_elements(By.ID, "notice"), "the retry's notice")
    assert f"Requeued job {flaky.id}" in notice[0].text
    browser.save_screenshot(str(artifacts / "dlq-retried.png"))
    result = _wait(lambda: asyncio.run(_result(spec, flaky.id)), "the retried job's result")
    assert result.success
    assert result.data == "recovered"
    assert flaky.id not in asyncio.run(_dead_ids(spec))

    browser.get(f"{base}/schedules")
    browser.get(f"{base}/workflows")
    assert browser.find_element(By.TAG_NAME, "h2").text == "Workflows"
    shots = sorted(p.name for p in artifacts.iterdir())
    assert shots == ["dlq-retried.png", "dlq.png", "job.png", "overview-later.png", "overview.png"]
