"""The demo's application: a small shop's background tasks and the jobs it enqueues.

Handlers sleep for a few milliseconds instead of doing I/O. Some fail on purpose:
a payment gateway that times out on the first attempt (retried, then succeeds) and
receipts to addresses that bounce (retried, then dead-lettered).
"""

from __future__ import annotations

import asyncio
import random
from typing import NamedTuple

from lexigram.contracts.tasks import Job, Priority
from lexigram.tasks.execution import HandlerRegistry
from lexigram.tasks.progress import ProgressTracker

BOUNCE_DOMAIN = "bounce.invalid"
UNHANDLED_TASK = "export_legacy_csv"
"""A task nobody handles: its job is dead-lettered at once (no retries)."""

REGIONS = ("eu", "us", "apac")
_ORDER_AMOUNTS = {
    "eu": [120.0, 89.9, 310.5, 42.0],
    "us": [15.0, 220.0, 99.99],
    "apac": [76.5, 410.0],
}
EUR_TO_USD = 1.08


class GatewayTimeoutError(Exception):
    """The (simulated) payment gateway did not answer in time."""


class MailboxUnavailableError(Exception):
    """The (simulated) mail server rejected the recipient for good."""


def order_amounts(region: str) -> list[float]:
    """The (made-up) order amounts of a region."""
    return list(_ORDER_AMOUNTS.get(region, []))


async def _work(low: float, high: float) -> None:
    await asyncio.sleep(random.uniform(low, high))  # noqa: S311 - simulated latency


async def resize_image(image_id: int, width: int) -> dict[str, int]:
    """Resize an uploaded image (low priority, bulk work)."""
    await _work(0.03, 0.12)
    return {"image_id": image_id, "width": width}


async def send_receipt(order_id: int, email: str) -> str:
    """E-mail a receipt; addresses at the bounce domain are rejected permanently."""
    await _work(0.02, 0.06)
    if email.endswith(f"@{BOUNCE_DOMAIN}"):
        msg = f"550 5.1.1 <{email}>: recipient mailbox unavailable"
        raise MailboxUnavailableError(msg)
    return f"receipt-{order_id}"


async def charge_card(order_id: int, amount: float, job: Job) -> dict[str, object]:
    """Charge an order; every seventh gateway call times out on its first attempt."""
    await _work(0.02, 0.08)
    if order_id % 7 == 3 and job.retry_count == 0:  # noqa: PLR2004 - the flaky orders
        msg = f"payment gateway timed out charging order {order_id}"
        raise GatewayTimeoutError(msg)
    return {"order_id": order_id, "amount": amount, "status": "captured"}


async def build_report(report: str, pages: int, progress: ProgressTracker) -> str:
    """Render a report page by page, reporting progress after each page."""
    for page in range(1, pages + 1):
        await _work(0.05, 0.11)
        await progress.update(page, pages, f"{report}: page {page}/{pages}")
    return f"{report}.pdf"


async def cleanup_sessions() -> int:
    """Expire stale sessions (the cron job)."""
    await _work(0.005, 0.02)
    return random.randint(0, 12)  # noqa: S311 - a made-up count


async def sync_partner(partner: str) -> str:
    """Push stock levels to a partner whose API allows a few calls a second."""
    await _work(0.005, 0.02)
    return f"{partner}: synced"


async def fetch_orders(region: str) -> list[float]:
    """Load a region's order amounts (workflow step)."""
    await _work(0.02, 0.05)
    return list(_ORDER_AMOUNTS.get(str(region), []))


async def sum_amounts(amounts: list[float]) -> float:
    """Add amounts up (workflow step)."""
    await _work(0.01, 0.03)
    return round(sum(float(a) for a in amounts), 2)


async def to_usd(total_eur: float) -> float:
    """Convert a total from EUR to USD (workflow step)."""
    await _work(0.01, 0.03)
    return round(float(total_eur) * EUR_TO_USD, 2)


async def notify(channel: str, total: float) -> str:
    """Announce a total on a channel (workflow step)."""
    await _work(0.01, 0.04)
    return f"{channel}: daily total {float(total):.2f}"


async def region_total(region: str) -> float:
    """A region's order total (chord header step)."""
    await _work(0.02, 0.05)
    return round(sum(_ORDER_AMOUNTS.get(str(region), [])), 2)


async def merge_totals(totals: list[float]) -> float:
    """Sum the regions' totals (chord callback)."""
    await _work(0.01, 0.03)
    return round(sum(float(t) for t in totals), 2)


def build_registry() -> HandlerRegistry:
    """Every demo handler under its task name."""
    registry = HandlerRegistry()
    for handler in (
        resize_image,
        send_receipt,
        charge_card,
        build_report,
        cleanup_sessions,
        sync_partner,
        fetch_orders,
        sum_amounts,
        to_usd,
        notify,
        region_total,
        merge_totals,
    ):
        registry.register(handler.__name__, handler)
    return registry


class Batch(NamedTuple):
    """The jobs of the demo's main batch.

    Attributes:
        jobs: The jobs, in enqueue order.
        bounced: How many receipts go to bouncing addresses.
        flaky: How many charges time out once.
    """

    jobs: list[Job]
    bounced: int
    flaky: int


def make_batch(count: int, queue_name: str) -> Batch:
    """Build `count` jobs: image resizes (low), receipts (normal), charges (high).

    Every other ten jobs one receipt bounces, and one charge in seven times out once;
    one job names a task that no handler serves.
    """
    jobs: list[Job] = []
    bounced = flaky = 0
    for n in range(1, count):
        kind = n % 10
        if kind < 4:  # noqa: PLR2004 - 40 % images
            job = Job(name="resize_image", args=(n, 640), priority=int(Priority.LOW))
        elif kind < 7:  # noqa: PLR2004 - 30 % receipts
            bounce = kind == 5 and (n // 10) % 2 == 1  # noqa: PLR2004
            bounced += bounce
            domain = BOUNCE_DOMAIN if bounce else "example.com"
            job = Job(
                name="send_receipt",
                args=(n, f"customer{n}@{domain}"),
                priority=int(Priority.NORMAL),
                max_retries=2,
            )
        else:  # 30 % charges
            flaky += n % 7 == 3  # noqa: PLR2004
            job = Job(
                name="charge_card",
                kwargs={"order_id": n, "amount": round(10 + n * 1.5, 2)},
                priority=int(Priority.HIGH),
            )
        job.queue_name = queue_name
        jobs.append(job)
    if count > 0:
        jobs.append(Job(name=UNHANDLED_TASK, args=("2019",), queue_name=queue_name))
    return Batch(jobs, bounced, flaky)
