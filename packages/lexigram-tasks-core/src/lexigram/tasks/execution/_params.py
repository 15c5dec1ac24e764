"""Handler parameter resolution: job arguments first, then injected values.

A handler's signature is analysed once and cached (the hot path only looks the plan
up). Binding rules, in order:

1. the job's positional `args` bind to the handler's positional parameters, in order
   (never dropped: extra ones go to ``*args`` or fail the job with a clear message);
2. the job's `kwargs` bind by name;
3. every parameter still unbound that is annotated `ProgressTracker`,
   `TaskExecutionContext` or `Job` gets the job's tracker, context or the job itself
   (a `def` handler's `ProgressTracker` parameter, and any `SyncProgressTracker` one, get
   the job's tracker as a `SyncProgressTracker`: a `def` handler runs in a thread, where
   the tracker's coroutines would never be awaited);
4. any other unbound parameter without a default is resolved from the DI container by
   its annotation (``Annotated[T, Named("x")]`` included).

A parameter whose default is `INJECTED` counts as having none: it is injected as above.
The default is for type checkers, which see the handler's parameters in the calls that
enqueue it (``task.delay(...)``): there an injected parameter would be a required argument.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from lexigram.contracts.tasks import Job, TaskValidationError
from lexigram.tasks.middleware import TaskExecutionContext
from lexigram.tasks.progress import ProgressTracker, SyncProgressTracker

_POS_ONLY = inspect.Parameter.POSITIONAL_ONLY
_POS_OR_KW = inspect.Parameter.POSITIONAL_OR_KEYWORD
_VAR_POS = inspect.Parameter.VAR_POSITIONAL
_KW_ONLY = inspect.Parameter.KEYWORD_ONLY
_VAR_KW = inspect.Parameter.VAR_KEYWORD
_EMPTY = inspect.Parameter.empty

TRACKER = "tracker"
SYNC_TRACKER = "sync_tracker"
CONTEXT = "context"
JOB = "job"

_SPECIAL_TYPES: dict[Any, str] = {
    ProgressTracker: TRACKER,
    SyncProgressTracker: SYNC_TRACKER,
    TaskExecutionContext: CONTEXT,
    Job: JOB,
}
_SPECIAL_NAMES = {
    "ProgressTracker": TRACKER,
    "SyncProgressTracker": SYNC_TRACKER,
    "TaskExecutionContext": CONTEXT,
    "Job": JOB,
    "JobProtocol": JOB,
}


class _Injected:
    """The type of `INJECTED`: any attribute read says what went wrong."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INJECTED"

    def __reduce__(self) -> str:
        return "INJECTED"  # copies and unpickling give the one marker back

    def __getattr__(self, name: str) -> Any:
        msg = (
            f"INJECTED has no attribute {name!r}: a handler parameter whose default is "
            "INJECTED is filled by the worker that runs the job (the job's tracker, context "
            "or the job itself, or a service of the DI container). Pass the value when you "
            "call the handler yourself."
        )
        raise AttributeError(msg)


INJECTED: Any = _Injected()
"""The default that marks a task handler's parameter as injected by the worker.

The worker gives a handler's `ProgressTracker`, `TaskExecutionContext` and `Job`
parameters, and resolves its other annotated parameters from the DI container. A type
checker sees every parameter in the calls that enqueue the task, so
``resize.delay("cat.png")`` would lack the tracker. As the parameter's default, `INJECTED`
makes it optional there and changes nothing for the worker (it injects the parameter as if
it had no default). A direct call of the handler must pass it. It is typed ``Any``, so it
fits any annotation, and it is a value, not a call, so linters that flag calls in
defaults (ruff's B008) leave it alone.

Example:
    @task
    async def resize(name: str, progress: ProgressTracker = INJECTED) -> str:
        await progress.update(1, 1)
        return name

    await resize.delay("cat.png")  # what mypy --strict accepts
"""


_OPTIONAL_TEXT = re.compile(r"^(?:Optional\[(?P<inner>.+)\]|(?P<left>[\w.]+)\s*\|\s*None)$")
_PLAN_CACHE_LIMIT = 4096
_plan_cache: dict[Any, HandlerPlan] = {}


class Resolver(Protocol):
    """What the worker needs from a DI container: ``await container.resolve(type)``."""

    async def resolve(self, service_type: Any) -> Any:
        """Return the service bound to `service_type`."""
        ...


class HandlerParam(NamedTuple):
    """One analysed handler parameter."""

    name: str
    kind: Any
    default: Any
    annotation: Any
    special: str | None

    @property
    def has_default(self) -> bool:
        """True when the parameter declares a default value."""
        return self.default is not _EMPTY


class HandlerPlan(NamedTuple):
    """The cached analysis of one handler: how to call it for any job."""

    handler: Any
    qualname: str
    is_async: bool
    positional: tuple[HandlerParam, ...]
    keyword_only: tuple[HandlerParam, ...]
    var_args: bool
    var_kwargs: bool
    names: frozenset[str]
    has_special: bool
    required_positional: tuple[str, ...]
    required_keyword: tuple[str, ...]
    always_direct: bool  # every call can go straight to the handler: nothing to inject

    def direct_call_ok(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """True when ``handler(*args, **kwargs)`` needs nothing injected (the fast path)."""
        if self.has_special:
            return False
        for name in self.required_positional[len(args) :]:
            if name not in kwargs:
                return False
        return all(name in kwargs for name in self.required_keyword)


def binding_error(plan: HandlerPlan, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when ``handler(*args, **kwargs)`` cannot bind to the handler's signature.

    Called only after a call raised `TypeError`, to tell a wrong call (the job's
    arguments: retrying cannot help) from a `TypeError` raised inside the handler.
    """
    target = getattr(plan.handler, "_func", plan.handler)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return True
    return False


def is_async_callable(handler: Any) -> bool:
    """Return True if calling `handler` returns a coroutine (async def, wrapped or not)."""
    func = getattr(handler, "_func", None)
    if func is not None:
        return is_async_callable(func)
    target = inspect.unwrap(handler)
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(type(target), "__call__", None)  # noqa: B004 - instances with async __call__
    return not inspect.isfunction(target) and inspect.iscoroutinefunction(call)


def plan_for(handler: Any) -> HandlerPlan:
    """Return the (cached) call plan of `handler`."""
    try:
        plan = _plan_cache.get(handler)
    except TypeError:  # an unhashable callable (e.g. a bound method of an unhashable object)
        return _analyse(handler)
    if plan is None:
        plan = _analyse(handler)
        if len(_plan_cache) >= _PLAN_CACHE_LIMIT:
            _plan_cache.clear()
        _plan_cache[handler] = plan
    return plan


def _hints(handler: Any) -> dict[str, Any]:
    candidates = [getattr(handler, "_func", None), handler]
    if not inspect.isroutine(handler) and not isinstance(handler, type):
        candidates.append(type(handler).__call__)  # a callable instance: hints of __call__
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            return typing.get_type_hints(candidate, include_extras=True)
        except Exception:  # noqa: S112 - unresolvable hints fall back to raw annotations
            continue
    return {}


def _special_of(annotation: Any) -> str | None:
    if isinstance(annotation, str):
        text = annotation.strip()
        match = _OPTIONAL_TEXT.match(text)
        if match:
            text = (match.group("inner") or match.group("left") or "").strip()
        return _SPECIAL_NAMES.get(text.rsplit(".", 1)[-1])
    candidates = [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        candidates = [typing.get_args(annotation)[0]]
    elif origin is typing.Union or type(annotation).__name__ == "UnionType":
        candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
    for candidate in candidates:
        try:
            special = _SPECIAL_TYPES.get(candidate)
        except TypeError:
            continue
        if special is not None:
            return special
    return None


def _analyse(handler: Any) -> HandlerPlan:
    target = getattr(handler, "_func", handler)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        signature = None
    hints = _hints(handler)
    positional: list[HandlerParam] = []
    keyword_only: list[HandlerParam] = []
    var_args = var_kwargs = signature is None
    for param in signature.parameters.values() if signature is not None else ():
        if param.kind is _VAR_POS:
            var_args = True
            continue
        if param.kind is _VAR_KW:
            var_kwargs = True
            continue
        annotation = hints.get(param.name, param.annotation)
        default = _EMPTY if param.default is INJECTED else param.default
        spec = HandlerParam(param.name, param.kind, default, annotation, _special_of(annotation))
        (keyword_only if param.kind is _KW_ONLY else positional).append(spec)
    specs = (*positional, *keyword_only)
    has_special = any(s.special is not None for s in specs)
    required_positional = tuple(s.name for s in positional if not s.has_default)
    required_keyword = tuple(s.name for s in keyword_only if not s.has_default)
    return HandlerPlan(
        handler=handler,
        qualname=getattr(target, "__qualname__", repr(target)),
        is_async=is_async_callable(handler),
        positional=tuple(positional),
        keyword_only=tuple(keyword_only),
        var_args=var_args,
        var_kwargs=var_kwargs,
        names=frozenset(s.name for s in specs),
        has_special=has_special,
        required_positional=required_positional,
        required_keyword=required_keyword,
        always_direct=not (has_special or required_positional or required_keyword),
    )


_USE_DEFAULT = object()


async def resolve_arguments(
    plan: HandlerPlan,
    job: Job,
    *,
    tracker: Callable[[], ProgressTracker],
    context: Callable[[], TaskExecutionContext],
    container: Resolver | None,
    ended: Callable[[], bool] | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """Bind `job`'s arguments to the handler and inject what is missing.

    Args:
        plan: The handler's plan (`plan_for`).
        job: The job being run.
        tracker: Returns the job's `ProgressTracker` (called only if one is wanted).
        context: Returns the job's `TaskExecutionContext` (called only if wanted).
        container: DI container for the remaining annotated parameters, or None.
        ended: Returns True once the job's attempt is over: a `SyncProgressTracker`
            then drops the calls of a handler thread that ran on (None: never).

    Returns:
        ``(args, kwargs)`` to call the handler with.

    Raises:
        TaskValidationError: The job's arguments do not fit the handler, or a
            parameter has no value and cannot be resolved.
    """
    args = list(job.args)
    kwargs = dict(job.kwargs)
    if len(args) > len(plan.positional) and not plan.var_args:
        msg = (
            f"Task {job.name!r} got {len(args)} positional arguments but its handler "
            f"{plan.qualname} takes {len(plan.positional)}. Fix the job's args or the "
            "handler's signature."
        )
        raise TaskValidationError(msg)
    if not plan.var_kwargs:
        unknown = sorted(set(kwargs) - plan.names)
        if unknown:
            msg = (
                f"Task {job.name!r} got keyword arguments {unknown} that its handler "
                f"{plan.qualname} does not accept. Fix the job's kwargs or the handler."
            )
            raise TaskValidationError(msg)
    for spec in (*plan.positional[len(args) :], *plan.keyword_only):
        if spec.name in kwargs:
            if spec.kind is _POS_ONLY:
                args.append(kwargs.pop(spec.name))
            continue
        value = await _inject(
            spec, plan, job, tracker=tracker, context=context, container=container, ended=ended
        )
        if spec.kind is _POS_ONLY:
            args.append(spec.default if value is _USE_DEFAULT else value)
        elif value is not _USE_DEFAULT:
            kwargs[spec.name] = value
    return args, kwargs


async def _inject(
    spec: HandlerParam,
    plan: HandlerPlan,
    job: Job,
    *,
    tracker: Callable[[], ProgressTracker],
    context: Callable[[], TaskExecutionContext],
    container: Resolver | None,
    ended: Callable[[], bool] | None,
) -> Any:
    if spec.special == TRACKER and plan.is_async:
        return tracker()
    if spec.special in {TRACKER, SYNC_TRACKER}:
        # The same tracker does the saving, run on this loop, so progress reported from
        # a thread is saved and broadcast exactly as from an async def handler.
        return SyncProgressTracker(tracker(), asyncio.get_running_loop(), ended=ended)
    if spec.special == CONTEXT:
        return context()
    if spec.special == JOB:
        return job
    if spec.has_default:
        return _USE_DEFAULT
    if spec.annotation is _EMPTY:
        msg = (
            f"Task {job.name!r}: parameter {spec.name!r} of {plan.qualname} got no value (the "
            f"job passed {len(job.args)} positional argument(s) and keywords "
            f"{sorted(job.kwargs)}) and has no type annotation to resolve it by. Pass it in "
            "the job's args/kwargs, give it a default, or annotate it with a type bound in "
            "the DI container."
        )
        raise TaskValidationError(msg)
    if isinstance(spec.annotation, str):
        msg = (
            f"Task {job.name!r}: parameter {spec.name!r} of {plan.qualname} is annotated "
            f"{spec.annotation!r}, a name that could not be resolved to a type (defined inside "
            "a function, or imported only under TYPE_CHECKING?), so it cannot be injected. "
            "Define or import the type at module level, or pass the value in the job."
        )
        raise TaskValidationError(msg)
    if container is None:
        msg = (
            f"Task {job.name!r}: parameter {spec.name!r} ({_describe(spec.annotation)}) of "
            f"{plan.qualname} got no value and no DI container is configured to resolve it. "
            "Pass it in the job's args/kwargs, give it a default, or run the worker with "
            "TaskWorkerServices(container=...)."
        )
        raise TaskValidationError(msg)
    return await container.resolve(spec.annotation)


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation)
