"""The published API's examples for the scheduler and workflows, run as written.

Only imports and the names the examples leave undefined (handlers, inputs, `queue`) are
added; the example lines themselves are verbatim.
"""

from __future__ import annotations

import time
from typing import Any

from lexigram.tasks import (
    BranchStep,
    CronExpression,
    JobTemplateProtocol,
    MemoryTaskQueue,
    TaskChain,
    TaskChord,
    TaskGroup,
    TaskScheduler,
    TaskStep,
    WorkflowStatus,
    chain,
)


def test_reference_cron_expression_example() -> None:
    cron = CronExpression("0 9 * * 1-5")  # Weekdays at 9am
    next_run = cron.get_next()

    assert next_run > time.time()
    assert time.gmtime(next_run).tm_hour == 9
    assert time.gmtime(next_run).tm_wday < 5  # Monday..Friday


async def test_reference_task_scheduler_example() -> None:
    queue = MemoryTaskQueue()

    scheduler = TaskScheduler()

    # Verbatim, hence the ignores: the BuildsDefault metaclass makes the protocol callable at run
    # time, but mypy sees a protocol, which cannot be called, and a result that is no JobTemplate.
    # Schedule job
    template = JobTemplateProtocol(name="cleanup", args=())  # type: ignore[misc, call-arg]
    scheduler.schedule_job(template, "0 0 * * *")  # type: ignore[arg-type]  # Daily at midnight

    # Start scheduler
    await scheduler.start_scheduler(queue.enqueue)

    try:
        assert scheduler.running
        [scheduled] = scheduler.get_scheduled_jobs()
        assert scheduled.job_template.name == "cleanup"
        assert scheduled.cron_expression == "0 0 * * *"
        assert time.gmtime(scheduled.next_run)[3:6] == (0, 0, 0)
    finally:
        await scheduler.stop_scheduler()
    assert await queue.get_task_count() == 0  # midnight has not come yet


async def test_reference_branch_step_example() -> None:
    async def manual_review(data: dict[str, Any]) -> str:
        return f"review {data['amount']}"

    async def auto_approve(data: dict[str, Any]) -> str:
        return f"approved {data['amount']}"

    workflow = BranchStep(
        condition=lambda data: data["amount"] > 1000,
        if_true=TaskStep("manual_review", manual_review),
        if_false=TaskStep("auto_approve", auto_approve),
    )

    assert (await workflow.execute({"amount": 5000})).unwrap().final_result == "review 5000"
    assert (await workflow.execute({"amount": 20})).unwrap().final_result == "approved 20"


async def test_reference_task_chain_example() -> None:
    saved: list[dict[str, Any]] = []

    async def parse_data(raw: str) -> dict[str, Any]:
        name, age = raw.split(",")
        return {"name": name, "age": int(age)}

    async def validate_data(record: dict[str, Any]) -> dict[str, Any]:
        if record["age"] < 0:
            msg = f"age must be >= 0, got {record['age']}"
            raise ValueError(msg)
        return record

    async def save_data(record: dict[str, Any]) -> str:
        saved.append(record)
        return f"saved {record['name']}"

    raw_input = "ada,36"

    chain = TaskChain(
        [
            TaskStep("parse", parse_data),
            TaskStep("validate", validate_data),
            TaskStep("save", save_data),
        ]
    )
    result = await chain.execute(raw_input)

    workflow = result.unwrap()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.final_result == "saved ada"
    assert saved == [{"name": "ada", "age": 36}]


async def test_reference_task_chord_example() -> None:
    async def fetch_a(_: Any) -> int:
        return 1

    async def fetch_b(_: Any) -> int:
        return 2

    async def merge_results(results: list[int]) -> int:
        return sum(results)

    chord = TaskChord(
        steps=[TaskStep("a", fetch_a), TaskStep("b", fetch_b)],
        callback=TaskStep("merge", merge_results),
    )
    result = await chord.execute()

    assert result.unwrap().final_result == 3


async def test_reference_task_group_example() -> None:
    sent: list[str] = []

    async def send_email(user: dict[str, str]) -> str:
        sent.append(f"email:{user['email']}")
        return "email sent"

    def send_sms(user: dict[str, str]) -> str:
        sent.append(f"sms:{user['phone']}")
        return "sms sent"

    user_data = {"email": "ada@example.com", "phone": "+100"}

    group = TaskGroup(
        [
            TaskStep("email", send_email),
            TaskStep("sms", send_sms),
        ]
    )
    result = await group.execute(user_data)

    assert result.unwrap().final_result == ["email sent", "sms sent"]
    assert sorted(sent) == ["email:ada@example.com", "sms:+100"]


async def test_reference_chain_function_example() -> None:
    db: list[int] = []

    async def validate_input(data: list[int]) -> list[int]:
        return [x for x in data if x >= 0]

    async def process_data(data: list[int]) -> list[int]:
        return [x * 10 for x in data]

    async def save_to_db(data: list[int]) -> int:
        db.extend(data)
        return len(data)

    raw_data = [1, -2, 3]

    result = await chain(
        TaskStep("validate", validate_input),
        TaskStep("process", process_data),
        TaskStep("persist", save_to_db),
    ).execute(raw_data)

    assert result.unwrap().final_result == 2
    assert db == [10, 30]
