"""Turning invalid configuration into one clear `TaskConfigurationError`.

Every problem becomes one line that names the field (its full dotted path), the value
(secrets masked), what is wrong and what to do::

    tasks.worker.worker_count = -1: must be ≥ 0. Set a non-negative number of workers.

The same module finds unknown keys (typos), which strict loading rejects and lenient
loading reports in the log with a "did you mean" suggestion.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from lexigram.contracts.tasks import (
    BackendError,
    TaskConfigurationError,
    TaskQueueError,
    mask_url,
    nearest_name,
)

logger = logging.getLogger(__name__)

Loc = tuple[str | int, ...]

_E = TypeVar("_E", bound=TaskQueueError)

_VARIABLE = "environment variable "

# Field names whose values are secret even when typed as plain strings (options, extra).
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|_key$|^key$|dsn|url)", re.IGNORECASE)
_MAX_VALUE_CHARS = 80


class ConfigProblem(NamedTuple):
    """One invalid value or unknown key, ready to be shown to a user.

    Attributes:
        field: Dotted path of the field, e.g. ``tasks.worker.worker_count``.
        value: The offending value, rendered with any secret masked.
        message: What is wrong, e.g. ``must be ≥ 0``.
        fix: What to do, as a sentence.
        source: Where the value came from (an environment variable), or empty.
    """

    field: str
    value: str
    message: str
    fix: str
    source: str = ""

    def render(self) -> str:
        """Return the one-line description: field, value, where it came from, problem, fix."""
        origin = f" (from {self.source})" if self.source else ""
        fix = f" {self.fix}" if self.fix else ""
        return f"{self.field} = {self.value}{origin}: {self.message}.{fix}"


class InvolvedValueError(ValueError):
    """A validator's error about a value that others decide, naming those values.

    A check across fields (two backends marked primary, a timeout set in two sections)
    fails at the location of the section that holds them all; pydantic keeps only that
    location. The locations given here, relative to it, are where the values involved
    sit, so that the problem names the environment variables that set any of them.

    Args:
        message: ``"<problem>. <fix>"``, as for any validator.
        involves: Locations of the values involved, relative to the error's location.
    """

    def __init__(self, message: str, *, involves: Iterable[Loc]) -> None:
        super().__init__(message)
        self.involves: tuple[Loc, ...] = tuple(involves)


class FieldsValueError(ValueError):
    """A validator's error about several values, each wrong for the same reason: one line each.

    A check across sections (a ``backend`` field that a ``backends`` list leaves unused)
    fails at the location of the section that holds them all; the problem becomes one
    line per value, naming its own path, its value and the variable that set it.

    Args:
        message: ``"<problem>. <fix>"``, said of each value.
        fields: The values, by location relative to the error's location.
    """

    def __init__(self, message: str, *, fields: Mapping[Loc, Any]) -> None:
        super().__init__(message)
        self.fields: dict[Loc, Any] = dict(fields)


def combine_sources(sources: Iterable[str]) -> str:
    """One origin for several values: ``environment variables A and B`` (empty for none)."""
    unique = [source for source in dict.fromkeys(sources) if source]
    if len(unique) <= 1:
        return unique[0] if unique else ""
    if all(source.startswith(_VARIABLE) for source in unique):
        names = [source.removeprefix(_VARIABLE) for source in unique]
        return f"environment variables {', '.join(names[:-1])} and {names[-1]}"
    return ", ".join(unique[:-1]) + f" and {unique[-1]}"


def sources_within(sources: Mapping[Loc, str], loc: Loc) -> str:
    """The origin of the values at or inside `loc` (a section set in part by variables)."""
    ordered = sorted(sources.items(), key=_by_loc)
    return combine_sources(source for at, source in ordered if at[: len(loc)] == loc)


def _by_loc(item: tuple[Loc, str]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])


def format_loc(loc: Sequence[str | int], root: str) -> str:
    """Return ``root.a.b[0].c`` for a pydantic location."""
    text = root
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _unwrap(annotation: Any) -> Any:
    """Strip ``X | None`` off an annotation."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """Return ``(model, is_list)`` for ``Model``, ``Model | None`` or ``list[Model]``."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (Any,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def field_at(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[str, FieldInfo] | None:
    """Return the ``(name, FieldInfo)`` that a pydantic location points at, if any."""
    current: type[BaseModel] | None = model
    found: tuple[str, FieldInfo] | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None:
            return found
        info = current.model_fields.get(part)
        if info is None:
            return found
        found = (part, info)
        current, _ = _model_of(info.annotation)
    return found


def is_secret(name: str, info: FieldInfo | None) -> bool:
    """Whether a field's value must never be shown (SecretStr, or a URL/password name)."""
    if info is not None:
        annotation = _unwrap(info.annotation)
        if annotation is SecretStr:
            return True
    return bool(_SECRET_NAME.search(name))


def mask_value(value: Any, *, secret: bool) -> str:
    """Render a config value for a message, masking it when it may hold a secret."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    # Whole sections are never printed: they may hold secrets under any key.
    if isinstance(value, Mapping):
        return "{...}"
    if isinstance(value, list | tuple):
        return f"[{len(value)} entries]"
    if isinstance(value, str) and "://" in value:
        # Any URL may carry a password, whatever key it sits under.
        return repr(mask_url(value))
    if secret:
        return "'***'" if value not in (None, "") else repr(value)
    text = repr(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


_MESSAGES: Mapping[str, str] = {
    "greater_than_equal": "must be ≥ {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be ≤ {le}",
    "less_than": "must be < {lt}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "missing": "is required",
    "model_type": "must be a mapping of settings",
    "model_attributes_type": "must be a mapping of settings",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}

_FIXES: Mapping[str, str] = {
    "greater_than_equal": "Set a value ≥ {ge}.",
    "greater_than": "Set a value > {gt}.",
    "less_than_equal": "Set a value ≤ {le}.",
    "less_than": "Set a value < {lt}.",
    "int_parsing": "Write a whole number such as 4.",
    "int_type": "Write a whole number such as 4.",
    "int_from_float": "Write a whole number such as 4.",
    "float_parsing": "Write a number such as 1.5.",
    "float_type": "Write a number such as 1.5.",
    "bool_parsing": "Write true or false.",
    "bool_type": "Write true or false.",
    "string_type": "Quote the value.",
    "missing": "Add the key.",
    "model_type": "Write this section as a mapping of key: value pairs.",
    "model_attributes_type": "Write this section as a mapping of key: value pairs.",
    "dict_type": "Write a mapping of key: value pairs.",
    "list_type": "Write a list (one '- ' item per entry; in a variable, comma-separated).",
    "string_too_short": "Give a non-empty value.",
    "too_short": "Give a non-empty value.",
}


def _fix_for(info: FieldInfo | None, error_type: str, ctx: Mapping[str, Any]) -> str:
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, Mapping) and isinstance(extra.get("fix"), str):
        return str(extra["fix"])
    template = _FIXES.get(error_type)
    if template is not None:
        return template.format(**ctx)
    return "Correct the value; see docs/configuration.md for the allowed values."


def _message_for(error: Mapping[str, Any]) -> tuple[str, str | None]:
    """Return the short message and, for our own validators, their full fix sentence."""
    error_type = str(error.get("type", ""))
    ctx = dict(error.get("ctx") or {})
    template = _MESSAGES.get(error_type)
    if template is not None:
        return template.format(**ctx), None
    text = str(error.get("msg", "is invalid"))
    if error_type == "value_error":
        text = text.removeprefix("Value error, ")
        # Our validators write "<problem>. <fix>"; split them so the line reads naturally.
        head, sep, tail = text.partition(". ")
        if sep:
            return head, tail
        return text.rstrip("."), None
    return text[:1].lower() + text[1:].rstrip("."), None


def problems_from_validation_error(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    root: str,
    sources: Mapping[Loc, str] | None = None,
    base_loc: Loc = (),
) -> list[ConfigProblem]:
    """Convert a pydantic `ValidationError` into `ConfigProblem` lines.

    Args:
        exc: The pydantic error.
        model: The model that was validated (to look fields up for fixes and secrecy).
        root: Prefix of every field path, e.g. ``"tasks"``.
        sources: Where individual values came from, by location (environment variables).
        base_loc: Location of `model` inside the root (for a nested section).

    Returns:
        One problem per pydantic error.
    """
    problems: list[ConfigProblem] = []
    known = sources or {}
    for error in exc.errors(include_url=False):
        loc: Loc = (*base_loc, *error.get("loc", ()))
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldsValueError):
            problems += _problems_of_fields(cause, model, error, loc, root=root, sources=known)
            continue
        found = field_at(model, error.get("loc", ()))
        name, info = found if found is not None else ("", None)
        message, own_fix = _message_for(error)
        ctx = dict(error.get("ctx") or {})
        fix = own_fix or _fix_for(info, str(error.get("type", "")), ctx)
        value = (
            "(missing)"
            if error.get("type") == "missing"
            else mask_value(error.get("input"), secret=is_secret(name, info))
        )
        problems.append(
            ConfigProblem(
                field=format_loc(loc, root),
                value=value,
                message=message,
                fix=fix if fix.endswith(".") else fix + ".",
                source=known.get(loc) or _involved_sources(error, loc, known),
            )
        )
    return problems


def _problems_of_fields(
    cause: FieldsValueError,
    model: type[BaseModel],
    error: Mapping[str, Any],
    loc: Loc,
    *,
    root: str,
    sources: Mapping[Loc, str],
) -> list[ConfigProblem]:
    """One line per value a `FieldsValueError` names, each with its own variable."""
    message, fix = _split_message(str(cause))
    problems: list[ConfigProblem] = []
    for relative, value in cause.fields.items():
        found = field_at(model, (*error.get("loc", ()), *relative))
        name, info = found if found is not None else (str(relative[-1]), None)
        at: Loc = (*loc, *relative)
        problems.append(
            ConfigProblem(
                field=format_loc(at, root),
                value=mask_value(value, secret=is_secret(name, info)),
                message=message,
                fix=fix if fix.endswith(".") else fix + ".",
                # Within: a mapping (``options``) may be set key by key, one variable each.
                source=sources_within(sources, at),
            )
        )
    return problems


def _involved_sources(error: Mapping[str, Any], loc: Loc, sources: Mapping[Loc, str]) -> str:
    """The variables that set the values a cross-field check names (`InvolvedValueError`)."""
    cause = (error.get("ctx") or {}).get("error")
    if not isinstance(cause, InvolvedValueError) or not sources:
        return ""
    return combine_sources(sources.get((*loc, *relative), "") for relative in cause.involves)


def problem_of_check(error: ValueError, *, root: str) -> ConfigProblem:
    """The line validation shows for `error`, raised by a check across a whole config's sections.

    For the same check run outside validation, on a config changed by assignment since
    (which validates only the field assigned): the same line, so the message does not
    depend on where the check ran.
    """
    message, fix = _split_message(str(error))
    return ConfigProblem(
        field=root,
        value=mask_value({}, secret=False),  # a whole section, as validation shows it
        message=message,
        fix=fix if fix.endswith(".") or not fix else fix + ".",
    )


def _split_message(text: str) -> tuple[str, str]:
    """``"<problem>. <fix>"`` as its two parts (no fix: the whole text, less its full stop)."""
    head, sep, tail = text.partition(". ")
    if sep:
        return head, tail
    return text.rstrip("."), ""


def _url_leaf(loc: Loc, sources: Mapping[Loc, str]) -> Loc | None:
    """The field of the backend at `loc` whose variable set its URL, if one did."""
    for where in sources:
        if len(where) == len(loc) + 1 and where[: len(loc)] == loc:
            name = str(where[-1])
            if name == "url" or name.endswith("_url"):
                return (name,)
    return None


def backend_error_with_sources(
    error: _E,
    *,
    field: str,
    loc: Loc,
    root: str,
    sources: Mapping[Loc, str],
    value_at: Callable[[Loc], Any],
) -> _E:
    """`error`, from building the backend configured at `loc`, naming the variables behind it.

    A backend checks its own settings (``options``, its URL) only when it is built, long
    after the configuration was read; its error names the backend's field (`field`, e.g.
    ``tasks.backends[0]``) but cannot know that a ``LEX_TASKS__*`` variable set the value.
    When one did, the error becomes one `ConfigProblem` line like those of loading: the
    option's own path and variable when the error names an option (``details["option"]``),
    the type, or the URL alone (``details["url"]``), else the backend's section and every
    variable that set part of it.
    Without such a variable, `error` is returned unchanged.

    Args:
        error: The backend's error, as prefixed with `field` (`prefixed_error`).
        field: The config path `error` is prefixed with.
        loc: Location of the backend's section (``("backends", 0)``, ``("backend",)``).
        root: Prefix of field paths (``"tasks"``).
        sources: Where the configuration's values came from, by location.
        value_at: The configuration's value at a location (for the masked value shown).

    Returns:
        A new error of the same type, details and hint, or `error`.
    """
    if not sources:
        return error
    text = error.message
    if "option" in error.details:
        leaf: Loc | None = ("options", str(error.details["option"]))
    elif isinstance(error, BackendError) and "type" in error.details:
        leaf = ("type",)
    else:
        leaf = None
    for prefix in (f"{field}.type = {error.details.get('type')!r}: ", f"{field}: "):
        text = text.removeprefix(prefix)
    if leaf is None and "url" in error.details and "scheme" not in error.details:
        # The URL alone is refused (its syntax, a scheme nothing serves, a part the
        # backend's client cannot read): named by the field that set it, ``url`` or the
        # backend's own (``redis_url``). The core's message opens with "<path>.url =
        # '<url>' ", which the problem line says already.
        leaf = _url_leaf(loc, sources)
        if leaf is None:
            return error  # the URL is the file's: no variable to name
        _, marker, rest = text.partition(f".url = {error.details['url']!r} ")
        if marker:
            text = f"it {rest}"
    where = loc if leaf is None else (*loc, *leaf)
    # At or inside: an option may be a mapping set key by key (``options.stores.url``).
    source = sources_within(sources, where)
    if not source:
        return error
    name = str(where[-1])
    value = value_at(where)
    shown = "{...}" if leaf is None else mask_value(value, secret=is_secret(name, None))
    message, fix = _split_message(text)
    problem = ConfigProblem(
        field=format_loc(where, root), value=shown, message=message, fix=fix, source=source
    )
    details = {**error.details, "field": problem.field, "source": source}
    return type(error)(problem.render(), details=details, hint=error.hint)


def configuration_error(
    problems: Sequence[ConfigProblem], *, origin: str | None = None
) -> TaskConfigurationError:
    """Build the error that lists every problem on its own line.

    Args:
        problems: The problems (at least one).
        origin: Where the configuration came from, e.g. ``"file 'app.yaml'"``.

    Returns:
        The error; its `details["problems"]` holds the structured problems.
    """
    where = f" in {origin}" if origin else ""
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    lines = "\n".join(f"  {problem.render()}" for problem in problems)
    msg = f"Invalid task configuration{where} ({count}); fix each line below.\n{lines}"
    details = {
        "problems": [
            {
                "field": p.field,
                "value": p.value,
                "message": p.message,
                "fix": p.fix,
                "source": p.source,
            }
            for p in problems
        ]
    }
    return TaskConfigurationError(msg, details=details)


def find_unknown_keys(
    model: type[BaseModel],
    data: Any,
    *,
    root: str,
    base_loc: Loc = (),
    sources: Mapping[Loc, str] | None = None,
) -> list[ConfigProblem]:
    """Return a problem for every key in `data` that `model` (recursively) does not know.

    Free-form mappings (``options``, ``extra``) are not checked.

    Args:
        model: The model `data` is meant for.
        data: The raw mapping.
        root: Prefix of every field path.
        base_loc: Location of `data` inside the root.
        sources: Where individual values came from, by location.

    Returns:
        The unknown keys, with a "did you mean" fix when a field name is close.
    """
    problems: list[ConfigProblem] = []
    if not isinstance(data, Mapping):
        return problems
    fields = model.model_fields
    for key, value in data.items():
        loc: Loc = (*base_loc, str(key))
        info = fields.get(str(key))
        if info is None:
            elsewhere: Mapping[str, str] = getattr(model, "keys_set_elsewhere", {})
            problems.append(
                _unknown(
                    str(key),
                    value,
                    loc,
                    root=root,
                    fields=fields,
                    sources=sources or {},
                    elsewhere=elsewhere.get(str(key)),
                )
            )
            continue
        nested, is_list = _model_of(info.annotation)
        if nested is None:
            continue
        if is_list and isinstance(value, list):
            for index, item in enumerate(value):
                problems += find_unknown_keys(
                    nested, item, root=root, base_loc=(*loc, index), sources=sources
                )
        elif not is_list:
            problems += find_unknown_keys(nested, value, root=root, base_loc=loc, sources=sources)
    return problems


def _unknown(
    key: str,
    value: Any,
    loc: Loc,
    *,
    root: str,
    fields: Iterable[str],
    sources: Mapping[Loc, str],
    elsewhere: str | None = None,
) -> ConfigProblem:
    close = nearest_name(key, fields)
    if elsewhere is not None:
        fix = f"Set it as {elsewhere}, or remove the key."
    elif close is not None:
        fix = f"Did you mean {close!r}? Fix the spelling or remove the key."
    else:
        known = ", ".join(sorted(fields))
        fix = f"Remove the key; this section accepts: {known}."
    return ConfigProblem(
        field=format_loc(loc, root),
        value=mask_value(value, secret=is_secret(key, None)),
        message="unknown key",
        fix=fix,
        source=next((src for at, src in sources.items() if at[: len(loc)] == loc), ""),
    )


def report_unknown_keys(problems: Sequence[ConfigProblem], *, origin: str | None) -> None:
    """Log unknown keys found in lenient mode (they are ignored, but are usually typos)."""
    where = f" in {origin}" if origin else ""
    for problem in problems:
        logger.warning(
            "Ignoring unknown task configuration key%s (strict is off): %s",
            where,
            problem.render(),
        )
