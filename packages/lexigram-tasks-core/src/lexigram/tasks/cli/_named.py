"""The backends of a ``tasks.backends`` list, picked by name as the application picks them.

An application injects each configured backend by its name (``Named("reports")``) and
``.delay()`` routes ``@task(queue="reports")`` to it. The commands follow the same names:
``--backend reports`` (or ``--queue reports``) runs a command on that configured backend,
with its own URL, options and queue, and a job, a schedule or a dead letter that names
another configured backend or its queue is sent to that backend (`spec_serving`), not to
a queue of that name on the command's own backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from lexigram.contracts.tasks import BackendError, TaskBackendSpec, TaskConfigurationError
from lexigram.tasks._backends import (
    available_backends,
    backend_type_of,
    config_path_of,
    entry_path,
    spec_from_config,
)
from lexigram.tasks.cli._errors import CLIError

if TYPE_CHECKING:
    from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig


CONFIG_FIELD = "tasks.backend"
"""The config path the commands' backend is named by in messages."""

# The backends of the command's configuration, by the name of the spec `configured_spec`
# built from each: (config, config path, index in tasks.backends or None).
# A command runs one configuration, and its queues and stores are opened from the spec
# alone, far from it; this is how their errors still name the entry's config path and
# the LEX_TASKS__* variables that set the values its backend refuses.
_configured: dict[str, tuple[TaskConfig, str, int | None]] = {}


def backend_field(spec: TaskBackendSpec) -> str:
    """The config path messages name for `spec`'s backend (``tasks.backends[1]``...)."""
    found = _configured.get(spec.name)
    return found[1] if found is not None else CONFIG_FIELD


@contextmanager
def config_errors(backend: str) -> Iterator[None]:
    """Let an error of building the backend named `backend` name the variables behind it.

    `TaskConfig.name_variables` rewrites it when that backend came from the command's
    configuration (`configured_spec`) and a ``LEX_TASKS__*`` variable set a value it may
    be about.
    """
    try:
        yield
    except (BackendError, TaskConfigurationError) as exc:
        found = _configured.get(backend)
        if found is None:
            raise
        config, path, index = found
        raise config.name_variables(exc, field=path, index=index) from None


def forget_configured() -> None:
    """Forget the backends noted for the previous command (several run in one process)."""
    _configured.clear()


def configured_spec(
    config: TaskConfig, entry: NamedTaskConfig | TaskBackendConfig
) -> TaskBackendSpec:
    """The spec of `entry` of `config`, noted so its errors name the entry and its variables.

    Every spec a command builds from a configured backend comes from here (its own
    backend, the other backends its handlers' ``.delay()`` reach, the backend serving a
    queue by name), so an error of building it, now or when a queue or store is opened
    from it, names the entry's config path and the ``LEX_TASKS__*`` variables behind it.
    """
    name = getattr(entry, "name", None) or "default"
    index = next((i for i, e in enumerate(config.backends) if e is entry), None)
    path = entry_path(index)
    _configured[name] = (config, path, index)
    with config_errors(name):
        return spec_from_config(entry, path=path)


def _entry_serving(config: TaskConfig, name: str) -> NamedTaskConfig | None:
    """The entry named `name`, else the only entry whose queue is `name` (as `routing_table`)."""
    for entry in config.backends:
        if entry.name == name:
            return entry
    serving = [entry for entry in config.backends if entry.queue_name == name]
    return serving[0] if len(serving) == 1 else None


def select_entry(
    config: TaskConfig, backend: str | None, queue_name: str | None
) -> NamedTaskConfig | None:
    """The configured backend that ``--backend`` (or, without it, ``--queue``) names.

    ``--backend`` is a configured backend's name, or a bare type that exactly one
    configured backend has; ``--queue`` is a configured backend's name or the queue of
    exactly one. None when the configuration has no ``backends`` list or nothing is
    named that way (a URL, another type, a queue of the primary backend).

    Raises:
        CLIError: ``--backend`` is a bare word that is neither a configured backend's
            name nor an installed backend type.
    """
    if not config.backends:
        return None
    if backend is not None:
        return _entry_for_backend_option(config, backend.strip())
    if queue_name is not None:
        return _entry_serving(config, queue_name.strip())
    return None


def _entry_for_backend_option(config: TaskConfig, word: str) -> NamedTaskConfig | None:
    if "://" in word:
        return None
    for entry in config.backends:
        if entry.name == word:
            return entry
    typed = [
        e
        for e in config.backends
        if backend_type_of(e, path=config_path_of(e, config)) == word.lower()
    ]
    if len(typed) == 1:
        return typed[0]
    installed = available_backends()
    if word.lower() in installed or any(mark in word for mark in ":/@"):
        return None  # a type (or a mistyped URL, which `parse_backend` explains)
    names = ", ".join(entry.name for entry in config.backends)
    msg = (
        f"--backend {word!r} is neither a configured backend ({names}) nor an installed "
        f"backend type ({', '.join(installed)}). Give the name of an entry of "
        "tasks.backends, a type, or a URL."
    )
    raise CLIError(msg)


def spec_serving(
    config: TaskConfig | None, spec: TaskBackendSpec, queue_name: str | None
) -> TaskBackendSpec:
    """The spec of the backend that serves `queue_name`, as ``.delay()`` would route it.

    With a ``tasks.backends`` list, a name that is another configured backend's name, or
    the queue of exactly one other configured backend, gives that backend's spec and
    queue; any other name (None: `spec`'s own queue) is a queue of `spec`'s backend.

    Args:
        config: The command's configuration.
        spec: The command's own backend.
        queue_name: The name a job, a schedule or a dead letter gives its queue.
    """
    if config is None or not config.backends or queue_name is None:
        return spec if queue_name is None else replace(spec, queue_name=queue_name)
    entry = _entry_serving(config, queue_name)
    if entry is None or entry.name == spec.name:
        own = entry.queue_name if entry is not None else queue_name
        return replace(spec, queue_name=own)
    return configured_spec(config, entry)
