"""One way for every backend to read `TaskBackendSpec.options`.

A backend declares its options as a frozen dataclass whose fields carry defaults and
type hints, and calls `parse_options` once per spec. The helper converts strings from
YAML or environment variables to the declared type, rejects unknown keys with the
nearest valid name, and names the backend, the option and the fix in every error, so
no backend writes its own parser and every backend reports mistakes the same way.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from lexigram.contracts.tasks._errors import TaskConfigurationError

OptionsT = TypeVar("OptionsT")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def option_names(options_type: type[Any]) -> tuple[str, ...]:
    """Names of the options a backend's options dataclass declares, in field order."""
    return tuple(field.name for field in dataclasses.fields(options_type))


def require_number(owner: str, name: str, value: object, *, whole: bool = False) -> None:
    """Refuse a constructor argument that is not a number, before any range check.

    A backend's checks compare numbers (``value > 0``); given a string they would fail
    with Python's ``'>' not supported between 'str' and 'int'``. `parse_options` converts
    strings from files and variables; an argument passed in code must be a number.

    Args:
        owner: Who takes it, for the message (e.g. ``"RedisTaskQueue"``).
        name: The argument.
        value: What was passed.
        whole: An integer is required.

    Raises:
        TaskConfigurationError: `value` is not an int or float (a bool is not a number
            here), or not an int when `whole`.
    """
    kinds: tuple[type, ...] = (int,) if whole else (int, float)
    if isinstance(value, kinds) and not isinstance(value, bool):
        return
    kind = "a whole number" if whole else "a number"
    msg = f"{owner} {name}={value!r} is not {kind}. Pass {kind}, e.g. {10 if whole else 30.0}."
    raise TaskConfigurationError(msg, details={"option": name})


def nearest_name(name: str, candidates: Any) -> str | None:
    """The candidate closest to `name` (a likely typo), or None when none is close."""
    import difflib  # noqa: PLC0415 - only a mistake's message needs it

    matches = difflib.get_close_matches(name, [str(c) for c in candidates], n=1, cutoff=0.6)
    return matches[0] if matches else None


def parse_options(
    backend: str, spec_name: str, options: Mapping[str, Any], options_type: type[OptionsT], /
) -> OptionsT:
    """Build `options_type` from a spec's options, converting and checking each value.

    Args:
        backend: The backend's type name, for messages (e.g. "redis").
        spec_name: The configured backend's name, for messages (e.g. "default").
        options: `TaskBackendSpec.options`; a None value means "use the default".
        options_type: A dataclass whose fields are the accepted options with defaults.

    Returns:
        An instance of `options_type`.

    Raises:
        TaskConfigurationError: An unknown option (naming the nearest valid one) or a
            value that does not convert to the declared type.
    """
    hints = _option_hints(options_type)
    names = option_names(options_type)
    values: dict[str, Any] = {}
    for key, value in options.items():
        name = str(key)
        if name not in hints or name not in names:
            near = nearest_name(name, names)
            hint = f" Did you mean {near!r}?" if near else ""
            msg = (
                f"{backend} backend {spec_name!r} got an unknown option {name!r}.{hint} "
                f"Known options: {', '.join(sorted(names))}."
            )
            raise TaskConfigurationError(msg, details={"backend": backend, "option": name})
        if value is None:
            continue
        values[name] = _convert(backend, spec_name, name, value, hints[name])
    return options_type(**values)


# A backend parses its options once per queue and store it builds (seven times at a Redis
# worker's start), and resolving the hints evaluates every field's annotation.
_hints_of: dict[type[Any], dict[str, Any]] = {}


def _option_hints(options_type: type[Any]) -> dict[str, Any]:
    hints = _hints_of.get(options_type)
    if hints is None:
        hints = _hints_of[options_type] = typing.get_type_hints(options_type)
    return hints


def _convert(backend: str, spec_name: str, name: str, value: Any, hint: Any) -> Any:
    allowed = _allowed_types(hint)
    for kind in allowed:
        converted = _try(kind, value)
        if converted is not _NO:
            return converted
    wanted = " or ".join(_describe(kind) for kind in allowed)
    msg = (
        f"{backend} backend {spec_name!r} option {name}={value!r} is not {wanted}. "
        f"Set options.{name} to {wanted}, or leave it out for the default."
    )
    raise TaskConfigurationError(msg, details={"backend": backend, "option": name})


def _allowed_types(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or isinstance(hint, types.UnionType):
        return [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return [hint]


_NO = object()


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else _NO


def _to_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return _NO
    try:
        return int(value)
    except ValueError:
        return _NO


def _to_float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return _NO
    try:
        number = float(value)
    except ValueError:
        return _NO
    return number if math.isfinite(number) else _NO


def _to_str(value: Any) -> Any:
    return value if isinstance(value, str) else _NO


_CONVERTERS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _try(kind: Any, value: Any) -> Any:
    if typing.get_origin(kind) is typing.Literal:
        return value if value in typing.get_args(kind) else _NO
    converter = _CONVERTERS.get(kind)
    if converter is not None:
        return converter(value)
    return value if isinstance(kind, type) and isinstance(value, kind) else _NO


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(kind))
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }.get(kind, getattr(kind, "__name__", str(kind)))
