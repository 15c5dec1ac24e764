"""The start-up read of the job-state store: one line naming the option, within the deadline.

`check_connection` reads the shared job-state store once (`check_state_store`), so a
``stores`` / ``state_store`` a worker could not record jobs in fails the command's start.
These tests cover the error it raises; no broker or store server is needed (the stores
here fail as a client library does). The real Redis case is in tests-integration.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.rabbitmq import LocalStateStore, RabbitMQOptions
from lexigram.tasks.backends.rabbitmq._stores import StoreOrigin, check_state_store, store_origin


class FailingStore(LocalStateStore):
    """A store whose reads fail with `error`, or never answer when it is None."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__()
        self.error = error
        self.read: list[str] = []

    async def get(self, key: str) -> str | None:
        self.read.append(key)
        if self.error is None:
            await asyncio.Event().wait()  # until the check's deadline cancels it
            return None
        raise self.error


ORIGIN = StoreOrigin("stores", "redis://:***@db:6379/0")


async def _message(store: LocalStateStore, within: float = 1.0) -> BackendConnectionError:
    with pytest.raises(BackendConnectionError) as info:
        await check_state_store(store, "ns:check", ORIGIN, "emails", within)
    return info.value


async def test_a_refused_login_names_the_option_and_keeps_the_stores_words() -> None:
    own = BackendConnectionError(
        "Redis at redis://:***@db:6379/0 rejected the credentials (WRONGPASS). Fix the "
        "user and password in the URL."
    )
    store = FailingStore(own)
    error = await _message(store)
    assert str(error) == (
        "The job-state store of RabbitMQ queue 'emails', option stores = "
        "redis://:***@db:6379/0, failed a read: Redis at redis://:***@db:6379/0 rejected "
        "the credentials (WRONGPASS). Fix the user and password in the URL. Correct the "
        "stores option (its URL or options) or that server."
    )
    assert error.__cause__ is own
    assert store.read == ["ns:check"]


async def test_a_foreign_error_is_one_line_with_its_type() -> None:
    error = await _message(FailingStore(OSError("no route\nto host")))
    assert "failed a read: OSError: no route to host. Correct the stores option" in str(error)
    assert "\n" not in str(error)


async def test_a_store_that_never_answers_fails_at_the_connect_timeout() -> None:
    started = time.monotonic()
    error = await _message(FailingStore(None), within=0.2)
    assert time.monotonic() - started < 1.0
    assert "did not answer a read within connect_timeout (0.2 s)" in str(error)
    assert isinstance(error.__cause__, TimeoutError)


async def test_a_timeout_of_the_stores_own_is_its_failure_not_ours() -> None:
    error = await _message(FailingStore(TimeoutError("read timed out")))
    assert "failed a read: TimeoutError: read timed out." in str(error)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            RabbitMQOptions(stores="redis://u:s3cret@db:6379/0"),
            StoreOrigin("stores", "redis://u:***@db:6379/0"),
        ),
        (
            RabbitMQOptions(
                stores="redis://db/0",
                state_store={"type": "postgres", "url": "postgresql://u:s3cret@pg/test"},
            ),
            StoreOrigin("state_store", "postgresql://u:***@pg/test"),
        ),
        (RabbitMQOptions(state_store=LocalStateStore()), StoreOrigin("state_store")),
    ],
    ids=["stores-url", "state-store-mapping", "state-store-object"],
)
def test_the_origin_names_the_option_in_use_with_the_password_masked(
    options: RabbitMQOptions, expected: StoreOrigin
) -> None:
    assert store_origin(options) == expected
    assert "s3cret" not in expected.describe()
