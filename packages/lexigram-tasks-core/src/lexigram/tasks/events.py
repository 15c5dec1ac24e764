"""The job event stream (`JobEvent`, `EventObserver`), domain events and an `EventBus`.

Everything that happens to a job is reported once, as a `JobEvent`, to the observers
of one stream: the worker emits "started", "completed", "retrying", "failed" (dead-
lettered), "released" and "lost"; the producer helper every enqueue goes through
(`submit_job`, under `.delay()`, `.apply_async()` and `enqueue_job`) emits "queued" on
`producer_events()`. Hooks (`HookRegistry`), the
`EventBus` (through `HookRegistry`), the `TaskDashboard` and your own metrics are
observers of that stream: an observer is any object with ``observe(event)``.

`HookRegistry` turns the stream into lifecycle hook actions and domain events:
"queued" becomes `TaskQueuedEvent`, "completed" `TaskCompletedEvent`, and "failed" (a
job that failed for good) `TaskFailedEvent`. Subscribers see each event when it
happens, in the process that emitted it. (The domain event classes are defined in
``_domain_events.py``, `JobEvent` and its kinds in ``_job_event.py``; import them from
here.)

Example:
    bus = EventBus()
    hooks = HookRegistry(event_bus=bus)

    async def on_done(event: TaskCompletedEvent) -> None:
        print(event.task_id, "done by", event.worker_id, "in", event.duration, "s")

    bus.subscribe(TaskCompletedEvent, on_done)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from lexigram.tasks._job_event import (
    CANCELLED,
    COMPLETED,
    FAILED,
    JOB_EVENT_KINDS,
    LOST,
    OUTCOME_LABELS,
    QUEUED,
    RELEASED,
    RETRYING,
    STARTED,
    JobEvent,
    new_job_event,
)
from lexigram.tasks._lazy import lazy_exports

# The domain event classes load on first use (the block below lists them): a worker
# publishes them only when an `EventBus` subscriber listens.
if TYPE_CHECKING:
    from lexigram.tasks._domain_events import (
        DomainEvent,
        TaskCompletedEvent,
        TaskFailedEvent,
        TaskQueuedEvent,
    )

__getattr__, __dir__ = lazy_exports(__name__)

logger = logging.getLogger(__name__)

_E = TypeVar("_E", bound="DomainEvent")


# -- the job event stream -------------------------------------------------------------


@runtime_checkable
class EventObserver(Protocol):
    """Receives the `JobEvent`s of the stream it is added to.

    `observe` may be a plain method or ``async def``. An observer that raises is logged
    and never fails a job or stops the other observers.

    Two optional attributes spare the emitter work: ``event_kinds``, the event kinds
    the observer handles (a collection of `JobEvent.kind` values; without it, or when it
    is not such a collection, every kind),
    and ``listening``, False while it would ignore every event (see
    `EventStream.listening_to`). An observer that changes its ``event_kinds`` after it was
    added to a stream calls `event_routes_changed`.

    An observer that only counts completed jobs (metrics) may also define
    ``count_completed(task, queue, attempt, enqueued_at, started_at, duration)`` (see
    `CompletionCounter`) and leave "completed" out of its ``event_kinds``: the stream then
    hands it each completed job's figures through that method instead of an event, so the
    worker builds no `JobEvent` for the one outcome every job has unless another observer
    reads it.
    """

    def observe(self, event: JobEvent) -> Awaitable[None] | None:
        """Handle one event."""
        ...


CompletionCounter = Callable[[str, str, int, float | None, float | None, float], None]
"""``count_completed(task, queue, attempt, enqueued_at, started_at, duration)``.

The figures of a "completed" event, positionally: task name, queue name, attempt
(1 for the first run), when the job was created and when the attempt started (epoch
seconds, None when unknown) and the seconds it ran. It returns nothing and must not block.
"""


_Completion = tuple[tuple[CompletionCounter, ...], bool]


# Bumped whenever an observer joins or leaves a stream or changes its ``event_kinds``: every
# stream compares it with the value its routes were made at (one global read a check).
_routes_generation = 0


def event_routes_changed() -> None:
    """Make every `EventStream` read its observers' ``event_kinds`` again on its next event.

    Call it after changing the ``event_kinds`` of an observer that is already in a stream.
    """
    global _routes_generation  # noqa: PLW0603 - one counter for every stream
    _routes_generation += 1


class EventStream:
    """Fans each `JobEvent` out to the observers that handle its kind, in the order added.

    It is itself an `EventObserver`, so streams nest.
    """

    __slots__ = (
        "_always",
        "_completion",
        "_counters",
        "_eager",
        "_generation",
        "_observers",
        "_routes",
        "_unrouted",
    )

    def __init__(self, observers: Iterable[EventObserver] = ()) -> None:
        self._observers: list[EventObserver] = []
        # How many observers listen by their class's definition (no ``listening`` switch,
        # or a plain ``listening = True``): while there is one, `listening` needs no scan.
        self._always = 0
        # Made from the observers' ``event_kinds`` by `_route`: the observers of each kind, those
        # of a kind no observer names, and the kinds an always-listening observer handles.
        self._routes: dict[str, tuple[EventObserver, ...]] = {}
        self._unrouted: tuple[EventObserver, ...] = ()
        self._eager: frozenset[str] = frozenset()
        # The ``count_completed`` of observers that take completed jobs as figures, and
        # what `completion_listeners` returns with them (made once per routing).
        self._counters: tuple[CompletionCounter, ...] = ()
        self._completion: tuple[_Completion, _Completion] = (((), True), ((), False))
        self._generation = -1
        for observer in observers:
            self.add(observer)

    def __repr__(self) -> str:
        return f"EventStream({self._observers!r})"

    def __bool__(self) -> bool:
        return bool(self._observers)

    def __len__(self) -> int:
        return len(self._observers)

    @property
    def observers(self) -> tuple[EventObserver, ...]:
        """The observers, in delivery order."""
        return tuple(self._observers)

    @property
    def observer_list(self) -> list[EventObserver]:
        """The live list of observers (read it, never change it: use `add`/`remove`).

        An emitter that reports many events keeps it to test ``if observers:``
        cheaply, seeing observers added later.
        """
        return self._observers

    @property
    def event_kinds(self) -> frozenset[str] | None:
        """The event kinds any of the observers handles (None: every kind)."""
        declared: set[str] = set()
        for observer in self._observers:
            kinds = _kinds_of(observer)
            if kinds is None:
                return None
            declared |= kinds
        return frozenset(declared)

    def add(self, observer: EventObserver) -> Callable[[], None]:
        """Add an observer; returns a function that removes it again.

        Raises:
            TypeError: `observer` has no ``observe`` method.
        """
        if not callable(getattr(observer, "observe", None)):
            msg = (
                f"An event observer needs an observe(event) method; {observer!r} has none. "
                "Pass e.g. a HookRegistry, a TaskDashboard or your own class."
            )
            raise TypeError(msg)
        self._observers.append(observer)
        if _listens_always(observer):
            self._always += 1
        event_routes_changed()  # this stream's routes, and those of streams it is in

        def remove() -> None:
            self.remove(observer)

        return remove

    def remove(self, observer: EventObserver) -> bool:
        """Remove an observer; True if it was there."""
        if observer in self._observers:
            self._observers.remove(observer)
            if _listens_always(observer):
                self._always -= 1
            event_routes_changed()
            return True
        return False

    @property
    def listening(self) -> bool:
        """False when every observer says it would ignore job events right now.

        An observer may have a ``listening`` attribute (a `HookRegistry` with no plugin,
        observer or subscriber has it False); one without it always counts. An
        observer that always listens answers without asking the others.
        """
        if self._always:
            return True
        for observer in self._observers:  # noqa: SIM110 - no generator on every job
            if getattr(observer, "listening", True):
                return True
        return False

    def listening_to(self, kind: str) -> bool:
        """False when no observer that handles `kind` events would read one now.

        Emitters of many events test it before building an event of `kind`: the worker
        builds no "started" event when only metrics that count outcomes listen.
        """
        if self._generation != _routes_generation:
            self._route()
        if kind in self._eager:
            return True
        for observer in self._routes.get(kind, self._unrouted):
            if getattr(observer, "listening", True):
                return True
        return False

    def completion_listeners(self) -> tuple[tuple[CompletionCounter, ...], bool]:
        """What a completed job needs: its counters, and whether its event is read now.

        The counters are the ``count_completed`` methods of the observers that define one
        and leave "completed" out of their ``event_kinds``, and of nested streams; the
        worker calls each with every completed job's figures (see `CompletionCounter`).
        The flag is ``listening_to(COMPLETED)``: whether a "completed" event is to be
        built and delivered as well. One call, as the worker asks it for every job.
        """
        if self._generation != _routes_generation:
            self._route()
        read, unread = self._completion
        if COMPLETED in self._eager:
            return read
        for observer in self._routes.get(COMPLETED, self._unrouted):
            if getattr(observer, "listening", True):
                return read
        return unread

    def count_completed(self, *figures: Any) -> None:
        """Hand a completed job's figures (see `CompletionCounter`) to the counters here.

        A counter that raises is logged; the others still run.
        """
        for count in self.completion_listeners()[0]:
            try:
                count(*figures)
            except Exception as error:
                counter_failed(count, str(figures[0]) if figures else "?", error)

    async def observe(self, event: JobEvent) -> None:
        """Deliver `event` to every observer of its kind; their errors are logged, not raised.

        The awaitable form of `deliver`, for a stream nested in another and for emitters
        that await anyway.
        """
        pending = self.deliver(event)
        if pending is not None:
            await pending

    def deliver(self, event: JobEvent) -> Awaitable[None] | None:
        """Hand `event` to every observer of its kind, in order; errors are logged, not raised.

        Observers whose ``observe`` is a plain method are called now. Returns None once
        every observer is done, or, from the first observer that returns an awaitable
        on, an awaitable that awaits it and then delivers to the observers after it (each
        still sees the event only after the ones before it are done). The emitter awaits
        what it gets: ``if (pending := stream.deliver(event)) is not None: await pending``.
        Emitters of many events use it rather than `observe`, which makes a coroutine for
        every event even when no observer needs one.
        """
        if self._generation != _routes_generation:
            self._route()
        # One iterator: an awaitable result hands the rest of it to `_deliver_rest`.
        observers = iter(self._routes.get(event.kind, self._unrouted))
        for observer in observers:
            try:
                result = observer.observe(event)
            except Exception as error:
                _observer_failed(observer, event, error)
                continue
            if result is not None:
                return _deliver_rest(result, observer, observers, event)
        return None

    def _route(self) -> None:
        generation = _routes_generation
        declared = [(observer, _kinds_of(observer)) for observer in self._observers]
        named = {kind for _, kinds in declared if kinds is not None for kind in kinds}
        self._routes = {
            kind: tuple(o for o, kinds in declared if kinds is None or kind in kinds)
            for kind in (*JOB_EVENT_KINDS, *named)
        }
        self._unrouted = tuple(o for o, kinds in declared if kinds is None)
        # A nested stream counts whatever its own counters count, whatever kinds it names.
        self._counters = tuple(
            observer.count_completed  # type: ignore[attr-defined]
            for observer, kinds in declared
            if callable(getattr(observer, "count_completed", None))
            and (
                isinstance(observer, EventStream) or (kinds is not None and COMPLETED not in kinds)
            )
        )
        self._completion = ((self._counters, True), (self._counters, False))
        self._eager = frozenset(
            kind
            for kind, observers in self._routes.items()
            if any(_listens_always(observer) for observer in observers)
        )
        self._generation = generation


def _kinds_of(observer: object) -> frozenset[str] | None:
    """The kinds `observer` declares it handles (None: every kind).

    Anything but a collection of names (a method of that name, a string) declares nothing.
    """
    kinds = getattr(observer, "event_kinds", None)
    if not isinstance(kinds, Collection) or isinstance(kinds, str):
        return None
    return frozenset(kinds)


def _listens_always(observer: object) -> bool:
    """True when `observer`'s class makes it listen to every event.

    That is: no ``listening`` attribute, or a class attribute that is plainly True
    (not a property), not overridden on the instance when it was added. An instance
    that switches itself off later still gets every event (`observe` delivers to all);
    the flag only saves `EventStream.listening` a scan.
    """
    declared = getattr(type(observer), "listening", True)
    return declared is True and "listening" not in getattr(observer, "__dict__", {})


async def _deliver_rest(
    pending: Awaitable[None],
    awaited: EventObserver,
    rest: Iterator[EventObserver],
    event: JobEvent,
) -> None:
    """Await what `awaited` returned for `event`, then deliver it to the `rest` in order."""
    try:
        await pending
    except Exception as error:
        _observer_failed(awaited, event, error)
    for observer in rest:
        try:
            result = observer.observe(event)
            if result is not None:
                await result
        except Exception as error:
            _observer_failed(observer, event, error)


def _observer_failed(observer: EventObserver, event: JobEvent, error: Exception) -> None:
    """Log the error an observer raised on `event`; the delivery goes on."""
    logger.error(
        "Event observer %r failed on %s of job %s; the others still run.",
        observer,
        event.kind,
        event.job_id,
        exc_info=error,
    )


def counter_failed(counter: CompletionCounter, task: str, error: Exception) -> None:
    """Log the error a completion counter raised; the job and the other observers go on."""
    logger.error(
        "Completion counter %r failed on a job of %s; the others still run.",
        counter,
        task,
        exc_info=error,
    )


_producer_events = EventStream()


def producer_events() -> EventStream:
    """The process-wide stream that "queued" events are emitted on.

    Every enqueue of the core passes through `lexigram.tasks.decorators.submit_job`
    (`.delay()`, `.apply_async()`, `enqueue_job`, the provider, the CLI, the
    scheduler), which emits one "queued" event here for each job a queue accepted (not
    for a deduplicated one), on every backend. The tasks provider adds its
    `HookRegistry` to it at boot.
    """
    return _producer_events


EventHandler = Callable[[Any], Awaitable[None] | None]
"""A subscriber: called with the event; may be sync or async."""


class EventBus:
    """In-process publish/subscribe of `DomainEvent`s by type.

    A subscriber to a class receives instances of it and of its subclasses
    (subscribe to `DomainEvent` for everything), in subscription order. A subscriber
    that raises is logged and does not stop the others or the publisher.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[type[DomainEvent], EventHandler]] = []

    def __repr__(self) -> str:
        return f"EventBus(subscribers={len(self._subscribers)})"

    @property
    def has_subscribers(self) -> bool:
        """True while anything is subscribed (an emitter may skip building events)."""
        return bool(self._subscribers)

    def subscribe(
        self, event_type: type[_E], handler: Callable[[_E], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Call `handler` with every published event of `event_type`.

        Args:
            event_type: The event class (subclasses included).
            handler: Sync or async callable taking the event.

        Returns:
            A function that removes this subscription.
        """
        entry: tuple[type[DomainEvent], EventHandler] = (event_type, handler)
        self._subscribers.append(entry)
        event_routes_changed()  # a HookRegistry publishing here listens now

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                event_routes_changed()

        return unsubscribe

    def unsubscribe(self, event_type: type[DomainEvent], handler: EventHandler) -> bool:
        """Remove a subscription; True if it existed."""
        for entry in self._subscribers:
            if entry[0] is event_type and entry[1] == handler:
                self._subscribers.remove(entry)
                event_routes_changed()
                return True
        return False

    async def publish(self, event: DomainEvent) -> None:
        """Deliver `event` to its subscribers; their errors are logged, not raised."""
        for event_type, handler in list(self._subscribers):
            if not isinstance(event, event_type):
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "Event subscriber %r failed on %s %s; the other subscribers still run.",
                    handler,
                    event.event_type,
                    event.event_id,
                )

    async def wait_for(
        self, event_type: type[_E], predicate: Callable[[_E], bool] | None = None
    ) -> _E:
        """Wait for the next published event of `event_type` matching `predicate`.

        Bound the wait with ``asyncio.timeout`` when needed.

        Example:
            async with asyncio.timeout(5):
                done = await bus.wait_for(TaskCompletedEvent, lambda e: e.task_id == job_id)
        """
        future: asyncio.Future[_E] = asyncio.get_running_loop().create_future()

        def deliver(event: _E) -> None:
            if not future.done() and (predicate is None or predicate(event)):
                future.set_result(event)

        unsubscribe = self.subscribe(event_type, deliver)
        try:
            return await future
        finally:
            unsubscribe()


__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "JOB_EVENT_KINDS",
    "LOST",
    "OUTCOME_LABELS",
    "QUEUED",
    "RELEASED",
    "RETRYING",
    "STARTED",
    "CompletionCounter",
    "DomainEvent",
    "EventBus",
    "EventHandler",
    "EventObserver",
    "EventStream",
    "JobEvent",
    "TaskCompletedEvent",
    "TaskFailedEvent",
    "TaskQueuedEvent",
    "event_routes_changed",
    "new_job_event",
    "producer_events",
]
