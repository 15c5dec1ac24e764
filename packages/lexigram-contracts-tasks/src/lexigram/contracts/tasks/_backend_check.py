"""`backend_problems`: what is wrong with a backend object's declarations, without I/O.

The conformance kit checks what a backend's queue does; this checks what its backend
object declares (`TaskBackendProtocol`): that the factories and methods it offers are
callable and that its self-description attributes have the declared types. It builds
nothing and calls nothing, so a backend's unit tests can run it without a service.
"""

from __future__ import annotations

import dataclasses

from lexigram.contracts.tasks._protocols import (
    MUST_EXIST_OPTION,
    OPTIONAL_BACKEND_FACTORIES,
    OPTIONAL_BACKEND_FLAGS,
    OPTIONAL_BACKEND_METHODS,
)

_MISSING = object()


def backend_problems(backend: object) -> list[str]:
    """Return one sentence per declaration of `backend` that breaks `TaskBackendProtocol`.

    Checked: `create_queue`, every factory in `OPTIONAL_BACKEND_FACTORIES` and method in
    `OPTIONAL_BACKEND_METHODS` it has is callable; ``url_schemes`` is a tuple of
    lower-case schemes without ``://``; ``url_field`` is a string or None;
    ``options_type`` is a dataclass type; ``first_answer_options`` is a tuple of its field
    names; a `MUST_EXIST_OPTION` field of it defaults to False; each flag in
    `OPTIONAL_BACKEND_FLAGS` is a bool.
    A declaration left out is not a problem.

    Example:
        assert backend_problems(backend) == []

    Args:
        backend: What the backend's entry point names.

    Returns:
        The problems, empty when there are none.
    """
    if isinstance(backend, type):
        msg = (
            f"{backend.__name__} is a class: the entry point must name an instance of it "
            "(or a create_queue function)."
        )
        return [msg]
    problems: list[str] = []
    if not callable(getattr(backend, "create_queue", None)):
        problems.append("create_queue is missing or not callable.")
    for name in (*OPTIONAL_BACKEND_FACTORIES, *OPTIONAL_BACKEND_METHODS):
        found = getattr(backend, name, _MISSING)
        if found is not _MISSING and not callable(found):
            problems.append(f"{name} is {type(found).__name__!r}, not callable.")
    problems.extend(_url_problems(backend))
    options_type = getattr(backend, "options_type", None)
    if options_type is not None and not (
        isinstance(options_type, type) and dataclasses.is_dataclass(options_type)
    ):
        problems.append(f"options_type is {options_type!r}, not a dataclass type.")
    problems.extend(_first_answer_problems(backend, options_type))
    problems.extend(_must_exist_problems(options_type))
    for flag in OPTIONAL_BACKEND_FLAGS:
        value = getattr(backend, flag, _MISSING)
        if value is not _MISSING and not isinstance(value, bool):
            problems.append(f"{flag} is {value!r}, not True or False.")
    return problems


def _url_problems(backend: object) -> list[str]:
    problems: list[str] = []
    schemes = getattr(backend, "url_schemes", ())
    if not isinstance(schemes, tuple):
        # A plain string would be read letter by letter as schemes.
        problems.append(f"url_schemes is {schemes!r}, not a tuple of strings.")
    else:
        for scheme in schemes:
            if not isinstance(scheme, str) or not scheme or scheme != scheme.lower():
                problems.append(f"url_schemes holds {scheme!r}, not a lower-case scheme.")
            elif ":" in scheme or "/" in scheme:
                problems.append(
                    f"url_schemes holds {scheme!r}: give the scheme alone, without '://'."
                )
    url_field = getattr(backend, "url_field", None)
    if url_field is not None and not (isinstance(url_field, str) and url_field.isidentifier()):
        problems.append(f"url_field is {url_field!r}, not a config field name or None.")
    return problems


def _first_answer_problems(backend: object, options_type: object) -> list[str]:
    names = getattr(backend, "first_answer_options", None)
    if names is None:
        return []
    if not (isinstance(names, tuple) and all(isinstance(name, str) for name in names)):
        return [f"first_answer_options is {names!r}, not a tuple of option names."]
    if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
        return ["first_answer_options names options, but there is no options_type to hold them."]
    fields = {field.name for field in dataclasses.fields(options_type)}
    unknown = [name for name in names if name not in fields]
    if unknown:
        return [f"first_answer_options names {unknown!r}, which options_type does not have."]
    return []


def _must_exist_problems(options_type: object) -> list[str]:
    if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
        return []
    for field in dataclasses.fields(options_type):
        if field.name == MUST_EXIST_OPTION and field.default is not False:
            # The read-only commands set it; every other program must create what it needs.
            problem = (
                f"options_type's {MUST_EXIST_OPTION} defaults to {field.default!r}: it must "
                "default to False (only the read-only commands set it to True)."
            )
            return [problem]
    return []
