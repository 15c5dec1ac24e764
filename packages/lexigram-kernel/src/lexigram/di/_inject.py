"""Binding keys and constructor-injection plans.

A binding key is ``(service_type, name)``. ``Annotated[T, Named("x")]`` is an alternative spelling
of the key ``(T, "x")``; both the registrar and the resolver accept it. An injection plan lists,
for one callable, what to pass to each parameter; it is computed once per binding and cached,
because ``inspect.signature(..., eval_str=True)`` is far slower than a resolve.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

from lexigram.di._errors import ResolutionError
from lexigram.di._markers import Named

__all__ = ["Param", "ServiceKey", "describe_key", "injection_plan", "service_key", "type_name"]

ServiceKey = tuple[Any, str | None]

_EMPTY = inspect.Parameter.empty


def type_name(obj: Any) -> str:
    """Return a short readable name for a type or callable (``Mailer``, ``make_queue``)."""
    if isinstance(obj, type) or inspect.isroutine(obj):
        return str(obj.__qualname__)
    return repr(obj)


def describe_key(key: ServiceKey) -> str:
    """Return ```Mailer``` or ```Mailer` named 'x'`` for messages."""
    service_type, name = key
    text = f"`{type_name(service_type)}`"
    return text if name is None else f"{text} named {name!r}"


def _split(annotation: Any) -> tuple[Any, str | None, bool]:
    """Strip ``Annotated`` and ``X | None`` off a hint: ``(X, binding name, optional)``."""
    name: str | None = None
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            base, *extras = get_args(annotation)
            markers = [extra.name for extra in extras if isinstance(extra, Named)]
            name = markers[-1] if markers else name
            annotation = base
        elif origin is Union or origin is types.UnionType:
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1 or len(members) == len(get_args(annotation)):
                # A real union (``A | B``) names no single binding; keep it as the key so the
                # error message shows what was asked for.
                return annotation, name, optional
            optional = True
            annotation = members[0]
        else:
            return annotation, name, optional


def service_key(service_type: Any, name: str | None = None) -> ServiceKey:
    """Return the binding key for ``service_type`` (``Annotated[T, Named("x")]`` -> ``(T, "x")``).

    Raises:
        TypeError: ``name`` and a ``Named`` marker disagree, or the type cannot be a dict key.
    """
    base = service_type
    marker: str | None = None
    if get_origin(service_type) is Annotated:
        base, marker, _ = _split(service_type)
    if name is not None and marker is not None and name != marker:
        msg = (
            f"Binding name {name!r} contradicts Named({marker!r}) in {service_type!r}. "
            "Give the name once, either as name= or as Named(...)."
        )
        raise TypeError(msg)
    try:
        hash(base)
    except TypeError:
        msg = f"{base!r} cannot be a service type because it is not hashable. Use a class."
        raise TypeError(msg) from None
    return base, name if name is not None else marker


class Param(NamedTuple):
    """How to fill one parameter of an injected callable.

    Attributes:
        name: The parameter name.
        positional: Whether it must be passed positionally (positional-only).
        key: The binding to resolve; ``None`` means "pass the container itself".
        optional: Whether a missing binding is allowed (a default, or an ``X | None`` hint).
        default: The value to pass when optional and unbound.
    """

    name: str
    positional: bool
    key: ServiceKey | None
    optional: bool
    default: Any


def injection_plan(target: Callable[..., Any]) -> tuple[Param, ...]:
    """Read the parameters of ``target`` (a class's ``__init__`` or a factory) into a plan.

    An annotated parameter is resolved from its hint. A parameter without a hint and without a
    default receives the container: that is the ``lambda c: ...`` / ``def make(container)``
    factory convention. ``*args``/``**kwargs`` and unannotated parameters with defaults are left
    alone.

    Raises:
        ResolutionError: The signature cannot be read or a hint names an undefined type.
    """
    try:
        signature = inspect.signature(target, eval_str=True)
    except NameError as exc:
        msg = (
            f"Cannot read the type hints of {type_name(target)}: {exc}. Hints are evaluated in "
            "the defining module's globals, so define the types they name at module level "
            "(not inside a function) or import them outside `if TYPE_CHECKING:`."
        )
        raise ResolutionError(msg, service_type=target) from exc
    except (TypeError, ValueError) as exc:
        msg = (
            f"Cannot inspect the signature of {type_name(target)} ({exc}). Bind it with an "
            "explicit instance or a factory function instead."
        )
        raise ResolutionError(msg, service_type=target) from exc

    plan: list[Param] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        has_default = param.default is not _EMPTY
        if param.annotation is _EMPTY:
            if not has_default:
                positional = param.kind is param.POSITIONAL_ONLY
                plan.append(Param(param.name, positional, key=None, optional=False, default=None))
            continue
        base, name, optional_hint = _split(param.annotation)
        plan.append(
            Param(
                name=param.name,
                positional=param.kind is param.POSITIONAL_ONLY,
                key=(base, name),
                optional=has_default or optional_hint,
                default=param.default if has_default else None,
            )
        )
    return tuple(plan)
