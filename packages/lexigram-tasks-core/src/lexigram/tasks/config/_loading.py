"""Reading raw configuration: YAML files, ``${VAR}`` interpolation, ``LEX_TASKS__*`` variables.

These functions produce plain dictionaries; `TaskConfig` validates them. Precedence,
lowest to highest: model defaults, the file, the environment (when `env_override`),
explicit overrides passed by the caller.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping, MutableMapping, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks.config._validation import Loc, _model_of, format_loc
from lexigram.tasks.constants import ENV_NESTED_DELIMITER, ENV_PREFIX

# ${VAR}, ${VAR:-default}; $${...} is an escaped literal "${...}".
_PLACEHOLDER = re.compile(
    r"\$(?P<escape>\$)?\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
)
_OPENING = "${"


@dataclass(slots=True)
class RawConfig:
    """A configuration mapping plus where some of its values came from.

    Attributes:
        data: The mapping (the tasks section).
        sources: Location -> origin for values taken from environment variables.
        origin: Description of the file, e.g. ``file 'app.yaml'``, or None.
    """

    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[Loc, str] = field(default_factory=dict)
    origin: str | None = None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader.

    Raises:
        TaskConfigurationError: The file is missing, unreadable or not valid YAML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (
            f"Config file '{path}' does not exist (relative paths start at {Path.cwd()}). "
            "Check the path of your YAML file."
        )
        raise TaskConfigurationError(msg, details={"path": str(path)}) from None
    except OSError as exc:
        msg = f"Config file '{path}' cannot be read ({exc.strerror}). Check its permissions."
        raise TaskConfigurationError(msg, details={"path": str(path)}) from None
    except UnicodeDecodeError as exc:
        # The line only: the bytes around the bad one may belong to a password.
        line = exc.object[: exc.start].count(b"\n") + 1
        msg = (
            f"Config file '{path}' is not UTF-8 text (byte {exc.object[exc.start]:#04x} on "
            f"line {line}). Save it as UTF-8."
        )
        raise TaskConfigurationError(msg, details={"path": str(path)}) from None
    # PyYAML is loaded only to read a file: configuration from the environment or a
    # mapping (a worker started with --backend) does without it.
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the position: the snippet yaml would print may contain a password.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        msg = f"Config file '{path}' is not valid YAML{where}: {problem}. Fix the syntax there."
        raise TaskConfigurationError(msg, details={"path": str(path)}) from None


def select_section(document: Any, section: str | None, path: Path) -> dict[str, Any]:
    """Return the tasks section of a parsed document.

    Args:
        document: The parsed YAML.
        section: Dotted key of the section (``"tasks"``, ``"app.tasks"``); None takes the
            ``tasks`` key when the document has one and the whole document otherwise;
            ``""`` always takes the whole document.
        path: The file, for messages.

    Raises:
        TaskConfigurationError: The document or the section is not a mapping, or the
            section is missing (with `section` None: no ``tasks`` key, and no top-level
            key is a setting of the tasks section either).
    """
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        msg = (
            f"Config file '{path}' holds a {type(document).__name__}, not a mapping. Write "
            "the settings as key: value pairs, e.g. 'tasks:' followed by indented keys."
        )
        raise TaskConfigurationError(msg, details={"path": str(path)})
    if section is None:
        if "tasks" not in document:
            _require_tasks_keys(document, path)
            return dict(document)
        # An empty `tasks:` means the defaults, and one that is not a mapping is an error
        # about that key, as for a section named explicitly (not "unknown key tasks.tasks").
        section = "tasks"
    current: Any = document
    for key in filter(None, section.split(".")):
        if not isinstance(current, Mapping) or key not in current:
            keys = ", ".join(repr(k) for k in current) if isinstance(current, Mapping) else ""
            msg = (
                f"Config file '{path}' has no section {section!r} (top-level keys: "
                f"{keys or 'none'}). Add the section, or pass section=None to use the "
                "whole file."
            )
            raise TaskConfigurationError(msg, details={"path": str(path), "section": section})
        current = current[key]
    if current is None:
        return {}
    if not isinstance(current, Mapping):
        msg = (
            f"Section {section!r} of config file '{path}' is a {type(current).__name__}, not "
            "a mapping. Write its settings as indented key: value pairs."
        )
        raise TaskConfigurationError(msg, details={"path": str(path), "section": section})
    return dict(current)


def _require_tasks_keys(document: Mapping[Any, Any], path: Path) -> None:
    """Refuse a whole document read as the tasks section when none of its keys belongs there.

    Such a file (``other: 1``) most likely lacks its ``tasks:`` line, or keeps the
    settings under another key; reporting each of its keys as unknown to the tasks
    section would hide that. A document with at least one tasks setting is left to the
    model, which names the keys it does not know.

    Raises:
        TaskConfigurationError: The document is not empty and none of its top-level keys
            is a setting of the tasks section.
    """
    if not document:
        return
    # Imported here: the model's module imports this one.
    from lexigram.tasks.config._task_config import TaskConfig  # noqa: PLC0415

    if any(str(key) in TaskConfig.model_fields for key in document):
        return
    keys = ", ".join(repr(str(key)) for key in document)
    msg = (
        f"Config file '{path}' has no 'tasks:' section (top-level keys: {keys}). Put the "
        "task settings under a top-level 'tasks:' key, e.g. 'tasks:' followed by an "
        "indented 'backend:' (from Python, section='app.tasks' reads a nested one)."
    )
    raise TaskConfigurationError(msg, details={"path": str(path), "section": "tasks"})


class _Interpolator:
    """Replaces placeholders in one document and collects every problem it meets."""

    def __init__(self, environ: Mapping[str, str], root: str) -> None:
        self.environ = environ
        self.root = root
        self.missing: list[tuple[str, str]] = []
        self.malformed: list[str] = []

    def walk(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, str):
            return self.substitute(value, loc) if "$" in value else value
        if isinstance(value, Mapping):
            return {key: self.walk(item, (*loc, str(key))) for key, item in value.items()}
        if isinstance(value, list):
            return [self.walk(item, (*loc, index)) for index, item in enumerate(value)]
        return value

    def substitute(self, text: str, loc: Loc) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group("escape"):
                return match.group(0)[1:]
            name, default = match.group("name"), match.group("default")
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.missing.append((name, format_loc(loc, self.root)))
                    return ""
                return default
            return value

        # An opening "${" that the pattern does not consume is a typo such as "${REDIS_URL".
        if _OPENING in _PLACEHOLDER.sub("", text):
            self.malformed.append(format_loc(loc, self.root))
        return _PLACEHOLDER.sub(replace, text)

    def error(self, origin: str) -> TaskConfigurationError | None:
        if not self.missing and not self.malformed:
            return None
        lines = [
            f"  {where}: environment variable {name} is not set. Set {name}, or give a "
            f"default with ${{{name}:-value}}."
            for name, where in self.missing
        ]
        lines += [
            f"  {where}: malformed placeholder. Write ${{NAME}} or ${{NAME:-default}}, or "
            "$${...} for a literal '${'."
            for where in self.malformed
        ]
        names = sorted({name for name, _ in self.missing})
        msg = f"Cannot interpolate {origin}; fix each line below.\n" + "\n".join(lines)
        return TaskConfigurationError(msg, details={"missing_variables": names})


def interpolate(
    data: Any, *, origin: str, environ: Mapping[str, str] | None = None, root: str = "tasks"
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of `data`.

    ``${VAR:-default}`` uses the default when VAR is unset or empty, as a shell does;
    ``$${...}`` stays as the literal text ``${...}``.

    Args:
        data: Parsed configuration (mappings, lists, scalars).
        origin: Description of the source for messages, e.g. ``config file 'app.yaml'``.
        environ: The variables (defaults to `os.environ`).
        root: Prefix of field paths in messages.

    Returns:
        A copy of `data` with the placeholders replaced.

    Raises:
        TaskConfigurationError: A variable without a default is not set, or a
            placeholder is malformed; every such place is listed.
    """
    interpolator = _Interpolator(os.environ if environ is None else environ, root)
    result = interpolator.walk(data, ())
    error = interpolator.error(origin)
    if error is not None:
        raise error
    return result


def apply_environment(
    raw: RawConfig,
    model: type[BaseModel],
    *,
    environ: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> RawConfig:
    """Overlay ``LEX_TASKS__SECTION__FIELD`` variables on `raw` (environment wins).

    Names are case-insensitive. Inside ``backends`` the segment after ``BACKENDS`` is
    an index (``LEX_TASKS__BACKENDS__0__TYPE``) or a backend's name
    (``LEX_TASKS__BACKENDS__NOTIFICATIONS__REDIS_URL``); a name not in the list adds a
    backend with that name.

    Args:
        raw: The configuration read so far (not modified).
        model: The root model, to know which keys are lists of sections.
        environ: The variables (defaults to `os.environ`).
        prefix: The variable prefix.

    Returns:
        A new `RawConfig` with the variables applied and their origins recorded.

    Raises:
        TaskConfigurationError: A variable indexes past the end of a list.
    """
    env = os.environ if environ is None else environ
    result = RawConfig(copy.deepcopy(raw.data), dict(raw.sources), raw.origin)
    upper = prefix.upper()
    for var in sorted(env):
        if not var.upper().startswith(upper) or len(var) == len(prefix):
            continue
        segments = [s.lower() for s in var[len(prefix) :].split(ENV_NESTED_DELIMITER)]
        if not all(segments):
            continue
        source = f"environment variable {var}"
        loc, named = _assign(result.data, segments, env[var], model, var)
        result.sources[loc] = source
        for at in named:
            # The variable added the entry: its name (or the lack of one) came from it.
            result.sources.setdefault(at, source)
    return result


def _assign(
    data: MutableMapping[str, Any],
    segments: list[str],
    value: str,
    model: type[BaseModel] | None,
    var: str,
) -> tuple[Loc, list[Loc]]:
    """Set ``data[seg0][seg1]... = value``, creating sections.

    Returns:
        The location set, and the locations of the ``name`` of each list entry the
        variable added by naming it.
    """
    container: MutableMapping[str, Any] = data
    loc: list[str | int] = []
    named: list[Loc] = []
    index = 0
    while index < len(segments) - 1:
        key = segments[index]
        info = model.model_fields.get(key) if model is not None else None
        nested, is_list = _model_of(info.annotation) if info is not None else (None, False)
        loc.append(key)
        if is_list:
            items = container.get(key)
            if not isinstance(items, MutableSequence):
                items = container[key] = []
            before = len(items)
            position = _list_position(items, segments[index + 1], var)
            loc.append(position)
            if len(items) > before:
                # A new entry: its name (given by the segment, or missing) is this variable's.
                named.append((*loc, "name"))
            container = items[position]
            index += 2
        else:
            child = container.get(key)
            if not isinstance(child, MutableMapping):
                child = container[key] = {}
            container = child
            index += 1
        model = nested
    if index == len(segments):
        # LEX_TASKS__BACKENDS__MAIN=...: an entry and no setting of it. Ignored, it
        # would add an entry with every default (a memory backend), silently.
        example = f"{var}{ENV_NESTED_DELIMITER}URL"
        msg = (
            f"Environment variable {var} names the entry {segments[-1]!r} of "
            f"{'.'.join(segments[:-1])} but none of its settings. Add the setting's name "
            f"after it, e.g. {example}."
        )
        raise TaskConfigurationError(msg, details={"variable": var})
    key = segments[index]
    info = model.model_fields.get(key) if model is not None else None
    container[key] = value if info is None else _env_value(info.annotation, value)
    loc.append(key)
    return tuple(loc), named


_NULL_WORDS = frozenset({"null", "none", "~"})


def _env_value(annotation: Any, value: str) -> Any:
    """A variable's text as the field takes it: null words for None, items for a list.

    A variable holds text only, so what YAML writes as ``null`` or a list is written
    ``null`` (or ``none``, ``~``) and ``a,b`` (or a JSON array); every other value stays
    text for the model to convert.
    """
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    if type(None) in options and value.strip().lower() in _NULL_WORDS:
        return None
    kinds = [a for a in options if a is not type(None)] if options else [annotation]
    if any(get_origin(kind) is list for kind in kinds):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                return value  # the model names the variable and what it expects
            return items if isinstance(items, list) else value
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _list_position(items: MutableSequence[Any], segment: str, var: str) -> int:
    if segment.isdigit():
        position = int(segment)
        if position < len(items):
            return position
        if position == len(items):
            items.append({})
            return position
        msg = (
            f"Environment variable {var} refers to entry {position}, but the list has "
            f"{len(items)} entries. Use an index below {len(items) + 1}, or the entry's name."
        )
        raise TaskConfigurationError(msg, details={"variable": var})
    for position, item in enumerate(items):
        if isinstance(item, Mapping) and str(item.get("name", "")).lower() == segment:
            return position
    items.append({"name": segment})
    return len(items) - 1


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `override` merged in; mappings merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_path(path: Path, profile: str) -> Path:
    """Return the overlay for `profile` next to `path` (``app.yaml`` -> ``app.prod.yaml``)."""
    return path.with_name(f"{path.stem}.{profile}{path.suffix}")
