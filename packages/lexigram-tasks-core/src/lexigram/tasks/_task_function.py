"""`TaskFunction`: what `@task` and `@scheduled` turn a function into.

The decorated function still runs when called; the `TaskFunction` around it also builds
the task's jobs from a call (``.s()``, ``.si()``, ``.signature()``: the arguments checked
against the function's signature, the idempotency key built from them) and enqueues them
(``.delay()``, ``.apply_async()``). It is kept apart from ``decorators.py``, which
declares tasks (checks the decorators' options, merges stacked decorators), because what
a declared task does when called is a concern of its own. Its public names are
importable from `lexigram.tasks.decorators`, where they were defined before.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from lexigram.contracts.tasks import (
    Job,
    Priority,
    ResultStoreProtocol,
    TaskQueueProtocol,
    TaskValidationError,
)
from lexigram.tasks._producer import DEFAULT_QUEUE, enqueue_job, queue_for
from lexigram.tasks.constants import IMMUTABLE_STEP_KEY
from lexigram.tasks.execution._options import TaskOptions
from lexigram.tasks.handles import JobHandle

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")

IdempotencyKey = str | Callable[..., str] | None
"""A fixed key, a ``str.format`` template over the call's arguments, or a function of them."""


class TaskFunction(Generic[P, R]):
    """A function decorated with `@task`: callable as before, plus enqueueing helpers.

    Attributes:
        name: The task name jobs carry (the handler is registered under it).
        options: The task's `TaskOptions`; the worker runs every job of the task
            with them.
        cron: Cron expression of a ``@scheduled`` task, else None.
        idempotency_key: Fixed key, template, or function of the arguments.
    """

    # Set by functools.update_wrapper; declared so type checkers know them.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        options: TaskOptions | None = None,
        idempotency_key: IdempotencyKey = None,
        cron: str | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self.name: str = name or _default_name(func)
        self.options = options if options is not None else TaskOptions()
        self.idempotency_key = idempotency_key
        self.cron = cron
        self._signature = _signature_of(func)
        self._applied_in = _applying_scope()

    # Older spellings of the public attributes, kept for code written against them.
    @property
    def _task_name(self) -> str:
        return self.name

    @property
    def _cron(self) -> str | None:
        return self.cron

    @_cron.setter
    def _cron(self, value: str | None) -> None:
        self.cron = value

    @property
    def _priority(self) -> int:
        return self.options.priority

    @property
    def _max_retries(self) -> int | None:
        return self.options.max_retries

    @property
    def _timeout(self) -> float | None:
        return self.options.timeout

    @property
    def _queue(self) -> str:
        return self.options.queue

    @property
    def _idempotency_key(self) -> IdempotencyKey:
        return self.idempotency_key

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name!r} of {self._func!r}>"

    if TYPE_CHECKING:
        # For type checkers only (at run time the class attribute is this object): read
        # from a class, a method task takes the arguments after ``self``, as its
        # producers pass them and the worker calls it (see `__set_name__`).
        def __get__(
            self: TaskFunction[Concatenate[Any, P2], R], instance: object, owner: type[Any]
        ) -> TaskFunction[P2, R]: ...

    def __set_name__(self, owner: type, attribute: str) -> None:
        """Declared in a class body: a handler class's method, run bound to an instance.

        The worker calls it as ``instance.method(*args, **kwargs)`` (`TaskProvider` binds
        it), so a producer passes the arguments after ``self``: the checks of `delay`,
        `s` and the idempotency key template read the signature without its first
        parameter, as the worker will call it.
        """
        signature = self._signature
        if signature is None or not is_method_of(self, owner):
            return  # a task assigned to a class attribute, not declared in the body
        parameters = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if parameters and parameters[0].kind in positional:
            self._signature = signature.replace(parameters=parameters[1:])

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no queue involved)."""
        return self._func(*args, **kwargs)

    def signature(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build the `Job` for a call with these arguments, without enqueueing it.

        Raises:
            TaskValidationError: The arguments do not fit the function's signature.
        """
        return self._routed(args, kwargs)

    # The second overload types a chain step that gets the previous step's result as its
    # first argument: the call then leaves the first parameter out.
    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Job: ...
    @overload
    def s(
        self: TaskFunction[Concatenate[Any, P2], R], *args: P2.args, **kwargs: P2.kwargs
    ) -> Job: ...
    def s(self, *args: Any, **kwargs: Any) -> Job:
        """Shorthand for `signature`; also a step of a queue-driven workflow.

        In a `JobChain` every step after the first receives the previous step's result
        as its first argument, before these, so ``parse.s()`` is a step of
        ``def parse(raw: str)``: type checkers accept a call with every argument or
        with all but the first (use `si` for a step that takes no previous result).
        """
        return self._routed(args, kwargs)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like `s`, but immutable: in a workflow the step gets only these arguments.

        The previous step's result is not prepended (type checkers check the call as
        for `s`).
        """
        job = self._routed(args, kwargs)
        job.metadata[IMMUTABLE_STEP_KEY] = True
        return job

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue a job for this call on the task's queue (see `queue_for`).

        Returns:
            A `JobHandle` of the enqueued job, for a duplicate idempotency key
            carrying the first job's id: ``await handle.result()`` waits for its result.

        Raises:
            TaskQueueError: The task's queue cannot be opened here (see `queue_for`), or
                the queue refused the job (e.g. `TaskValidationError` for arguments that
                are not JSON).
        """
        job = self._build(args, kwargs)
        queue = queue_for(self.options.queue)
        return JobHandle(queue, await enqueue_job(queue, job))

    # Type checkers check the arguments of a call without options against the function's
    # signature (a ParamSpec admits no further keywords); a call with at least one option
    # matches one of the later overloads, whose arguments are not checked.
    @overload
    async def apply_async(
        self, queue: TaskQueueProtocol, /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        priority: Priority | int,
        max_retries: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        max_retries: int | None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        timeout: float | None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        idempotency_key: str | None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        result_store: ResultStoreProtocol | None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    async def apply_async(  # type: ignore[misc] # P.kwargs could hold an option's name
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        priority: Priority | int | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]:
        """Enqueue a job for this call on `queue`, overriding the task's options.

        `priority`, `max_retries`, `timeout`, `idempotency_key` and `result_store` are
        options, not arguments of the function (a function with parameters of those
        names must be enqueued with `signature` plus `enqueue_job`). The values given
        here are set on the job and win over the task's options for this job only.
        `result_store` is where the handle reads the job's result (default: the store
        registered for `queue`, see `register_job_stores`).

        Returns:
            A `JobHandle` of the enqueued job.

        Raises:
            TaskQueueError: The queue refused the job.
        """
        job = override_options(
            self._build(args, kwargs),
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return JobHandle(queue, await enqueue_job(queue, job), result_store=result_store)

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        bound = self._bind(args, kwargs)
        # Only the priority is copied (the queue orders by it); max_retries and timeout
        # stay None so that the worker's registered task decides them.
        return Job(
            name=self.name,
            args=tuple(args),
            kwargs=dict(kwargs),
            priority=self.options.priority,
            idempotency_key=self._key_for(args, kwargs, bound),
        )

    def _routed(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """`_build`, naming the task's queue so a router sends the job where `delay` would.

        Only the built-but-not-enqueued jobs carry it: `delay` and `apply_async` pick the
        queue themselves and leave the name to that queue, as they always have.
        """
        job = self._build(args, kwargs)
        if self.options.queue != DEFAULT_QUEUE:
            job.queue_name = self.options.queue
        return job

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            return {}
        try:
            # Partial: parameters the worker injects (tracker, DI services) are not passed.
            return dict(self._signature.bind_partial(*args, **kwargs).arguments)
        except TypeError as exc:
            msg = (
                f"Task {self.name!r} cannot be called with these arguments: {exc}. "
                f"Its signature is {self.name}{self._signature}."
            )
            raise TaskValidationError(msg) from None

    def _key_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> str | None:
        key = self.idempotency_key
        if key is None or (isinstance(key, str) and "{" not in key):
            return key
        try:
            if isinstance(key, str):
                return key.format(**bound)
            return str(key(*args, **kwargs))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = (
                f"Task {self.name!r}: idempotency_key {key!r} could not be built from "
                f"the call's arguments ({type(exc).__name__}: {exc}). Use only parameter names "
                "in the template, e.g. 'sync-{user_id}'."
            )
            raise TaskValidationError(msg) from None


def override_options(
    job: Job,
    *,
    priority: Priority | int | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """`job` with the options a caller gave for it alone (None: as the task built it).

    What ``apply_async``'s options and the ``enqueue`` command's do: they win over the
    task's definition for this job only.
    """
    if priority is not None:
        job.priority = int(priority)
    if max_retries is not None:
        job.max_retries = max_retries
    if timeout is not None:
        job.timeout = timeout
    if idempotency_key is not None:
        job.idempotency_key = idempotency_key
    return job


def _signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _default_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__name__", type(func).__name__))


# The modules whose frames lie between the code applying ``@task`` and `TaskFunction`:
# the decorators (`task`, `scheduled`) and this one.
_DECLARING_MODULES = frozenset({__name__, "lexigram.tasks.decorators"})


def _applying_scope() -> str | None:
    """The qualified name of the code that applied ``@task`` (a class body's: its class's).

    The first frame outside this module and ``decorators.py`` (`_DECLARING_MODULES`): a
    class body when the decorator is written there, ``<module>`` at module level.
    """
    frame: FrameType | None = sys._getframe(1)  # noqa: SLF001 - where it was applied
    while frame is not None and frame.f_globals.get("__name__") in _DECLARING_MODULES:
        frame = frame.f_back
    return None if frame is None else frame.f_code.co_qualname


def is_method_of(function: TaskFunction[Any, Any], owner: type) -> bool:
    """Whether `function` was declared in the body of `owner` (a method of it).

    Either the function's own qualified name says so, or ``@task`` was applied in that
    class body (the function may be wrapped by a decorator that does not copy its name).
    A task defined elsewhere and assigned to a class attribute (``send = send_email``)
    is neither: it runs as the plain function it is, never bound to an instance.
    """
    declared_in = getattr(function.__wrapped__, "__qualname__", "").rpartition(".")[0]
    return owner.__qualname__ in (declared_in, function._applied_in)  # noqa: SLF001
