"""The demo's settings, its report, and what a correct run produces (the self-check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lexigram.tasks.cli._demo_app import EUR_TO_USD, REGIONS, order_amounts

CHANNELS = ("email", "sms", "push")
PARTNER_RATE = 5  # jobs per second on the rate-limited queue


class DemoSettings(NamedTuple):
    """How much work the demo does.

    Attributes:
        jobs: Jobs in the main batch.
        reports: Jobs that report progress.
        partners: Jobs on the rate-limited queue.
        cron_fires: Fires of the every-second cron job to wait for.
        workers: Workers in the main pool (each runs `concurrency` jobs at once).
        concurrency: Jobs one worker runs at once.
    """

    jobs: int = 60
    reports: int = 3
    partners: int = 10
    cron_fires: int = 3
    workers: int = 2
    concurrency: int = 8


@dataclass(slots=True)
class DemoReport:
    """What happened, for the summary table (and for tests).

    Attributes:
        backend: The backend's description (password masked).
        run_id: The run's id (its queues are named after it).
        elapsed: Wall time of the whole run, in seconds.
        batch_size: Jobs in the main batch.
        succeeded: Jobs (all kinds) that succeeded.
        attempts: Execution attempts (all kinds).
        retried: Failed attempts that were retried.
        dead_letters: Dead-letter records of this run: (job id, task, error).
        batch_seconds: Time until every batch job finished or was dead-lettered.
        start_rank: Mean start position of the batch's jobs per priority name.
        reports: Report name -> last progress percentage seen.
        cron_fires: Runs of the cron job.
        partner_jobs: Jobs on the rate-limited queue.
        partner_seconds: Time from the first to the last of them finishing.
        workflows: Workflow name -> (status, description of the result).
        expected_dead_letters: Jobs built to fail for good (bounces, the unhandled task).
        expected_retries: Failed attempts built to be retried (flaky charges, bounces).
        expected_results: Workflow name -> the final result a correct run produces.
        results: Workflow name -> the final result this run produced.
    """

    backend: str = ""
    run_id: str = ""
    elapsed: float = 0.0
    batch_size: int = 0
    succeeded: int = 0
    attempts: int = 0
    retried: int = 0
    dead_letters: list[tuple[str, str, str]] = field(default_factory=list)
    batch_seconds: float = 0.0
    start_rank: dict[str, float] = field(default_factory=dict)
    reports: dict[str, float] = field(default_factory=dict)
    cron_fires: int = 0
    partner_jobs: int = 0
    partner_seconds: float = 0.0
    workflows: dict[str, tuple[str, Any]] = field(default_factory=dict)
    expected_dead_letters: int = 0
    expected_retries: int = 0
    expected_results: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def problems(self, settings: DemoSettings) -> list[str]:
        """What went differently from a correct run (empty when all is well).

        The demo checks itself, so running it is also a test of the backend it ran on.
        """
        found: list[str] = []
        dead = len(self.dead_letters)
        if dead != self.expected_dead_letters:
            found.append(f"{dead} jobs were dead-lettered, expected {self.expected_dead_letters}")
        if self.retried < self.expected_retries:
            found.append(f"{self.retried} attempts were retried, expected {self.expected_retries}")
        expected_ok = self.attempts - self.retried - dead
        if self.succeeded != expected_ok:
            found.append(f"{self.succeeded} jobs succeeded, expected {expected_ok}")
        unfinished = [name for name, pct in self.reports.items() if pct < 100.0]  # noqa: PLR2004
        if len(self.reports) != settings.reports or unfinished:
            found.append(f"progress reports did not all reach 100 %: {self.reports}")
        if self.cron_fires < settings.cron_fires:
            found.append(
                f"the cron job ran {self.cron_fires} times, expected {settings.cron_fires}"
            )
        for name, expected in self.expected_results.items():
            if self.results.get(name) != expected:
                found.append(f"workflow {name} gave {self.results.get(name)!r}, not {expected!r}")
        order = [self.start_rank.get(p, 0.0) for p in ("high", "normal", "low")]
        if order != sorted(order):
            found.append(f"jobs did not start in priority order: {self.start_rank}")
        floor = (self.partner_jobs - 1) / PARTNER_RATE * 0.9
        if self.partner_seconds < floor:
            found.append(
                f"{self.partner_jobs} rate-limited jobs finished in {self.partner_seconds:.2f} s, "
                f"faster than the {PARTNER_RATE}/s limit allows"
            )
        return found


def expected_workflow_results() -> dict[str, Any]:
    """The final results a correct run of the demo's workflows produces."""
    eu = round(sum(order_amounts("eu")), 2)
    chain = round(eu * EUR_TO_USD, 2)
    return {
        "chain": chain,
        "group": [f"{channel}: daily total {chain:.2f}" for channel in CHANNELS],
        "chord": round(sum(round(sum(order_amounts(r)), 2) for r in REGIONS), 2),
    }


def describe_flow(label: str, final: Any) -> str:
    """One line about a workflow's outcome for the summary."""
    if final is None:
        return "no result"
    if label == "chain":
        return f"EU orders → total → {final} USD"
    if label == "group" and isinstance(final, list):
        sent = sum(1 for item in final if item)
        return f"{sent}/{len(final)} notifications sent ({', '.join(CHANNELS)})"
    if label == "chord":
        return f"{len(REGIONS)} regions in parallel → merged total {final}"
    return str(final)
