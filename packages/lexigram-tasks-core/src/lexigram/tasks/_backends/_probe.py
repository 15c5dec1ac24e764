"""The start-up connection check: one cheap call, so an unreachable backend fails at once.

Every command of the command line that talks to a backend and `TaskProvider.boot` call
`probe` before they start anything (workers, the scheduler, a server), so a wrong URL or
password, or a server that is down, ends the start with the backend's own one-line error
(``RabbitMQ at amqp://guest:***@host:5672/ refused the login of user 'guest' ...``)
instead of a process that starts and then logs warnings while it retries.

A backend bounds the wait for its first answer itself, with the options it names as
``first_answer_options`` (`first_answer_options`); its error names the server, the cause
and the option, so it should be the one shown. The probe's own deadline (`outer_deadline`)
is a margin past those, a last resort for a backend that has none. The command line sets
its ``--connect-timeout`` as those options (`with_connect_timeout`); a provider leaves the
configured options alone and waits past them.

A process with several backends checks them all at once (`probe_all`): the worker command,
its supervisor and `TaskProvider.boot` check the same set, every configured backend, so a
wrong URL anywhere fails each of them the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, NamedTuple

from lexigram.contracts.tasks import (
    BackendConnectionError,
    ConnectionCheckingQueueProtocol,
    TaskBackendSpec,
    TaskQueueError,
    TaskQueueProtocol,
    option_names,
)
from lexigram.tasks._backends._entry_points import backend_attribute
from lexigram.tasks._presence import describe_backend
from lexigram.tasks.constants import DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    from lexigram.tasks._backends._registry import TaskBackendRegistry

OUTER_DEADLINE_MARGIN = 1.0
"""Seconds the probe's own deadline waits beyond the backend's, so that the backend's
precise error (naming the cause and the option) is the one shown."""

CONNECT_TIMEOUT_OPTIONS = ("connect_timeout", "socket_connect_timeout")
"""Options that bound a backend's first answer when it declares no ``first_answer_options``
(and has them in its ``options_type``)."""

FIRST_ANSWER_OPTION = "command_timeout"
"""Counted too for a backend with no ``connect_timeout`` option (and no declaration): then
(as with Redis) a server that accepts connections and never replies is only caught by it."""


class ProbeWords(NamedTuple):
    """How the probe's own messages name what the one who started it can change.

    Attributes:
        timeout: What set the `probe`'s `timeout` (``--connect-timeout``).
        address: Where the backend's URL comes from (``--backend (or the config's url)``).
    """

    timeout: str
    address: str


COMMAND_LINE = ProbeWords(timeout="--connect-timeout", address="--backend (or the config's url)")
"""The words of the command line's commands (the default of `probe`)."""


def _attribute(spec: TaskBackendSpec, name: str, registry: TaskBackendRegistry | None) -> object:
    if registry is not None:
        return registry.backend_attribute(spec.type, name)
    return backend_attribute(spec.type, name)


def first_answer_options(
    spec: TaskBackendSpec, *, registry: TaskBackendRegistry | None = None
) -> tuple[str, ...]:
    """The options of `spec`'s backend that bound the wait for its first answer.

    What the backend object declares as ``first_answer_options``; otherwise read from
    its ``options_type``: ``connect_timeout`` and ``socket_connect_timeout`` where
    declared, and ``command_timeout`` when the backend has no ``connect_timeout``
    (nothing else catches a server that accepts connections and never replies). Empty
    for a backend that declares none of them.

    Args:
        spec: The backend's spec.
        registry: Resolve the backend through it (a backend registered in code); None
            reads the installed backends.

    Raises:
        BackendError: The backend cannot be loaded.
    """
    named = _attribute(spec, "first_answer_options", registry)
    if isinstance(named, tuple):
        return tuple(str(name) for name in named)
    options_type = _attribute(spec, "options_type", registry)
    if not isinstance(options_type, type):
        return ()
    declared = option_names(options_type)
    names = [name for name in CONNECT_TIMEOUT_OPTIONS if name in declared]
    if "connect_timeout" not in declared and FIRST_ANSWER_OPTION in declared:
        names.append(FIRST_ANSWER_OPTION)
    return tuple(names)


def with_connect_timeout(spec: TaskBackendSpec, seconds: float) -> TaskBackendSpec:
    """`spec` with `seconds` (``--connect-timeout``) as its backend's own first-answer deadline.

    Each option named by `first_answer_options` that the configuration does not set is
    set to `seconds`, so an unreachable or silent server fails with the backend's own
    message (which names the server, the cause and the option). Options the
    configuration sets are kept: they were chosen for this deployment.
    """
    missing = {
        name: seconds for name in first_answer_options(spec) if spec.options.get(name) is None
    }
    if not missing:
        return spec
    return dataclasses.replace(spec, options={**spec.options, **missing})


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _defaults(spec: TaskBackendSpec, registry: TaskBackendRegistry | None) -> dict[str, object]:
    """The defaults of the backend's ``options_type`` (what an option left unset means)."""
    options_type = _attribute(spec, "options_type", registry)
    if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
        return {}
    return {
        field.name: field.default
        for field in dataclasses.fields(options_type)
        if field.default is not dataclasses.MISSING
    }


def own_deadline(
    spec: TaskBackendSpec, *, registry: TaskBackendRegistry | None = None
) -> float | None:
    """The longest of the backend's own deadlines for a first answer, or None if it has none.

    Each option of `first_answer_options` counts with its configured value, else its
    default in the backend's ``options_type`` (an option whose default is None, such as
    SQLite's ``open_timeout``, counts only when configured).
    """
    own: list[float] = []
    defaults: dict[str, object] | None = None
    for name in first_answer_options(spec, registry=registry):
        value = spec.options.get(name)
        if value is None:
            if defaults is None:
                defaults = _defaults(spec, registry)
            value = defaults.get(name)
        seconds = _seconds(value)
        if seconds is not None:
            own.append(seconds)
    return max(own, default=None)


def outer_deadline(
    spec: TaskBackendSpec, timeout: float, *, registry: TaskBackendRegistry | None = None
) -> float:
    """Seconds `probe` waits: a little past the backend's own deadline for a first answer.

    The backend's error is precise, so it should be the one the user reads; the probe's
    own deadline is only a last resort for a backend that has none. `timeout` is the
    least it waits before its margin (`own_deadline` when that is longer).
    """
    return _past(timeout, own_deadline(spec, registry=registry))


def _past(timeout: float, own: float | None) -> float:
    return max(timeout, own or 0.0) + OUTER_DEADLINE_MARGIN


@contextmanager
def quiet_logging(within: str | None = None) -> Iterator[None]:
    """Silence logging at ERROR and below inside the block, unless it is at DEBUG.

    Client libraries log every failed connection attempt while they retry (aiormq an
    ERROR, a backend's reconnect loop a warning); a failed check is reported as one
    line, its error, so those stay quiet while it runs.

    Args:
        within: Quiet only this logger and the ones under it (an application's start:
            the rest of the process keeps logging); None quiets every logger (a command,
            which owns its process). The level `logging.disable` had before, or the
            logger's own level, is restored after. Not reentrant across concurrent
            tasks: wrap a group of concurrent checks once.
    """
    if within is not None:
        scoped = logging.getLogger(within)
        if scoped.getEffectiveLevel() <= logging.DEBUG:
            yield
            return
        level = scoped.level
        scoped.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            scoped.setLevel(level)
        return
    previous = logging.root.manager.disable
    if previous >= logging.ERROR or logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        yield
        return
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


async def probe(
    queue: TaskQueueProtocol,
    spec: TaskBackendSpec,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    *,
    registry: TaskBackendRegistry | None = None,
    words: ProbeWords = COMMAND_LINE,
    quiet: bool = True,
) -> None:
    """Make one cheap call so an unreachable backend fails now, with one clear line.

    The call is ``check_connection()`` where the queue offers it
    (`ConnectionCheckingQueueProtocol`: it reads no job, whatever the backlog), else
    ``count()``. The backend's own error is never replaced by this one's: a
    `TaskQueueError` is raised as it is, and a `TimeoutError` the backend raised at a
    deadline of its own is reported with its text.

    Args:
        queue: The queue to check.
        spec: Its backend's spec (for the messages and the backend's own deadlines).
        timeout: The least the probe waits before its margin (see `outer_deadline`).
        registry: Resolve the backend through it (see `first_answer_options`).
        words: How the messages name what set `timeout` and where the URL comes from.
        quiet: Run inside `quiet_logging`; False for a caller that wraps several
            concurrent checks in it once.

    Raises:
        BackendConnectionError: The backend did not answer within the deadline, or failed
            with an error that is not one of ours (an `OSError`, a `TimeoutError` of its
            own).
        TaskQueueError: The backend's own (already clear) error, e.g. a connection error.
    """
    where = describe_backend(spec)
    own = own_deadline(spec, registry=registry)
    waited = (
        f"{words.timeout} {timeout:g} s"
        if own is None or own <= timeout
        else f"its own first-answer deadline of {own:g} s"
    )
    deadline = _past(timeout, own)
    ours = asyncio.timeout(deadline)
    try:
        with quiet_logging() if quiet else nullcontext():
            async with ours:
                if isinstance(queue, ConnectionCheckingQueueProtocol):
                    await queue.check_connection()
                else:
                    await queue.count(queue.queue_name)
    except TaskQueueError:
        raise
    except TimeoutError as exc:
        if not ours.expired():  # the backend's own deadline ran out: its words, not ours
            said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            msg = f"The {where} backend gave up waiting for an answer ({said})."
            raise BackendConnectionError(msg, backend=spec.type) from exc
        msg = (
            f"The {where} backend did not answer within {deadline:g} s ({waited} and a "
            f"{OUTER_DEADLINE_MARGIN:g} s margin). Check that the server is running and "
            f"reachable, and that {words.address} is right."
        )
        raise BackendConnectionError(msg, backend=spec.type, timeout=deadline) from None
    except OSError as exc:
        msg = (
            f"Cannot reach the {where} backend ({type(exc).__name__}: {exc}). Check that the "
            f"server is running and that {words.address} is right."
        )
        raise BackendConnectionError(msg, backend=spec.type) from exc


class QueueCheck(NamedTuple):
    """One queue of `probe_all`: the queue, its backend's spec and how a failure names them."""

    queue: TaskQueueProtocol
    spec: TaskBackendSpec
    words: ProbeWords = COMMAND_LINE


async def probe_all(
    checks: Sequence[QueueCheck],
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    *,
    registry: TaskBackendRegistry | None = None,
    within: str | None = None,
) -> None:
    """`probe` every queue of `checks` at once; the first failure is raised as it is.

    The first failure (in the order of `checks` among those that end together) cancels
    the other checks. Logging is quiet meanwhile (`quiet_logging`, once for the group):
    the backends' lines about each failed attempt would only repeat the error.

    Args:
        checks: The queues to check.
        timeout: The least each check waits (see `probe`).
        registry: Resolve the backends through it (backends registered in code).
        within: Quiet only this logger and those under it (an application's start);
            None quiets the whole process (a command, which owns it).

    Raises:
        TaskQueueError: A backend is unreachable, refuses the connection or never answers.
    """
    tasks = [
        asyncio.ensure_future(
            probe(
                check.queue, check.spec, timeout, registry=registry, words=check.words, quiet=False
            )
        )
        for check in checks
    ]
    with quiet_logging(within=within):
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:  # also when the caller itself is cancelled
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
