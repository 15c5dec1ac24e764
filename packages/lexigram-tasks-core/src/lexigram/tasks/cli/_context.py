"""What every command needs: the config, the backend spec, the queue, and the stores.

Configuration is read the way the library reads it: a YAML file (``--config``, with
``${VAR}`` interpolation and ``LEX_TASKS__*`` overrides), else the APP's own config,
else ``LEX_TASKS__*`` variables alone. Command-line options win over all of them.
``--backend`` takes a URL (its scheme picks the backend type) or a bare type name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from lexigram.contracts.tasks import (
    MUST_EXIST_OPTION,
    BackendError,
    TaskBackendSpec,
    TaskQueueProtocol,
    mask_url,
    option_names,
)
from lexigram.tasks._backends import (
    IN_MEMORY,
    TaskBackendRegistry,
    available_backends,
    backend_attribute,
    backend_for_scheme,
    check_url_syntax,
    config_path_of,
    install_hint,
    known_schemes,
    load_backend,
    missing_backend_fix,
    release_backends,
    shown_url,
    spec_from_config,
    url_of,
    with_connect_timeout,
)
from lexigram.tasks._backends import is_process_local as backend_is_process_local
from lexigram.tasks._closing import close_each
from lexigram.tasks._presence import describe_backend
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._named import (
    backend_field,
    config_errors,
    configured_spec,
    forget_configured,
    select_entry,
)
from lexigram.tasks.constants import (
    DEFAULT_BACKEND,
    DEFAULT_DB_ENV,
    DEFAULT_DB_FILE,
    DEFAULT_DB_SCHEME,
    DEFAULT_QUEUE_NAME,
    ENV_PREFIX,
    FIRST_PARTY_SCHEMES,
)
from lexigram.tasks.di._stack import (
    apply_process_settings,
    build_hooks,
    build_queue,
    build_store,
    observe_enqueues,
    prefixed_error,
    report_config_issues,
)

if TYPE_CHECKING:
    from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig


def configured_by_environment(section: str = "") -> bool:
    """Whether a ``LEX_TASKS__<section>*`` variable is set (any ``LEX_TASKS__*`` by default).

    Case-insensitive, as `TaskConfig.from_env` reads the variables. ``"BACKEND"`` covers
    ``tasks.backend`` and ``tasks.backends``.
    """
    prefix = ENV_PREFIX + section.upper()
    return any(name.upper().startswith(prefix) for name in os.environ)


@contextmanager
def enqueues_reported() -> Iterator[None]:
    """Report every job enqueued inside the block to the installed plugins' hooks.

    What a command that sends jobs does (``enqueue``, the ``scheduler``'s fires, ``dlq
    retry``, ``schedule run-now``, the ``dashboard``'s retries): its jobs are "queued"
    to the plugins, as a `TaskProvider` reports an application's. The stream of
    enqueues is the process's, so only a command observes it, never a library object
    that may run inside an application whose provider already does.
    """
    stop = observe_enqueues(build_hooks())
    try:
        yield
    finally:
        stop()


def refuse_disabled(config: TaskConfig | None, command: str, *, scheduler: bool = False) -> None:
    """Refuse a configuration that turns `command` off, as `TaskProvider` runs none then.

    Args:
        config: The command's configuration (None: the defaults, which turn nothing off).
        command: What the command runs, for the message ("worker", "scheduler").
        scheduler: ``tasks.scheduler.enabled`` turns it off too.

    Raises:
        CLIError: ``tasks.enabled`` (or, with `scheduler`, ``tasks.scheduler.enabled``) is
            false.
    """
    if config is None:
        return
    switches = [("tasks.enabled", config.enabled, "LEX_TASKS__ENABLED")]
    if scheduler:
        switches.append(
            ("tasks.scheduler.enabled", config.scheduler.enabled, "LEX_TASKS__SCHEDULER__ENABLED")
        )
    for key, enabled, variable in switches:
        if not enabled:
            msg = (
                f"The configuration sets {key} to false, so it runs no {command} (a "
                f"TaskProvider with it runs none either). Set it to true or remove it (e.g. "
                f"{variable}=true) to run this {command}."
            )
            raise CLIError(msg)


def read_config(
    path: str | None,
    base: TaskConfig | None = None,
    *,
    report: bool = True,
    backend: str | None = None,
) -> TaskConfig | None:
    """Read the configuration for a command, or None when nothing is configured.

    Nothing is configured when there is no file, no APP config and no ``LEX_TASKS__*``
    variable: every default applies then (the composition root reads them from the
    plain records the configuration models take their defaults from), and the
    configuration models, with pydantic, are not imported. Either way the process-wide
    settings (envelope signing, size limit, enqueue timeout) are set from it.

    Args:
        path: A YAML file (``--config``); read with ``LEX_TASKS__*`` overrides.
        base: The APP's own config, used when no file is given.
        report: Log what `TaskConfig.validate_for_environment` finds (as `TaskProvider`
            does); False for a process whose parent has reported it.
        backend: The ``--backend`` given, if any: it replaces the type and URL of the
            configuration's backend, so what the checks find in those is not reported.

    Returns:
        The file's config, else `base` (with ``LEX_TASKS__*`` variables over it), else
        the one those variables describe, else None.

    Raises:
        TaskConfigurationError: The file is missing or invalid, or a variable is.
    """
    forget_configured()  # the previous command's (several run in one test process)
    if path is None and base is None and not configured_by_environment():
        apply_process_settings(None)
        return None
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415 - only when configured

    if path is not None:
        config = TaskConfig.from_yaml(path)
    elif base is not None:
        config = base.with_environment()  # the variables win over the APP's own config
    else:
        config = TaskConfig.from_env()
    apply_process_settings(config)
    if report:
        replaced = config_path_of(config.primary_backend or config.backend, config)
        report_config_issues(config, replaced=replaced if backend is not None else None)
    return config


def load_config(
    path: str | None, base: TaskConfig | None = None, *, backend: str | None = None
) -> TaskConfig:
    """Load the configuration for a command: `read_config`'s, or the defaults' model.

    Raises:
        TaskConfigurationError: The file is missing or invalid, or a variable is.
    """
    config = read_config(path, base, backend=backend)
    if config is not None:
        return config
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415 - the defaults' model

    return TaskConfig()


def default_backend(
    config_path: str | None, base: TaskConfig | None, backend: str | None
) -> str | None:
    """The ``--backend`` to use: `backend`, or the default database when no backend is configured.

    No backend is configured when there is no ``--backend``, no ``--config``, no config
    of the APP's own and no ``LEX_TASKS__BACKEND*`` variable (a variable of another
    section, ``LEX_TASKS__WORKER__LOG_JOBS`` say, changes that section only, as its
    command-line option would). Then every command uses one SQLite
    database file, ``lexigram-tasks.db`` in the working directory (``$LEXIGRAM_TASKS_DB``
    names another file), so a worker and a producer started in two terminals share it,
    and says so in its first line (on stderr), naming ``$LEXIGRAM_TASKS_DB`` when that
    chose the file. Without the SQLite backend installed, the configuration's own
    default (the in-memory backend) is kept.

    Returns:
        The backend URL or type to pass to `resolve_spec`, or None.
    """
    if backend is not None or config_path is not None or base is not None:
        return backend
    if configured_by_environment("BACKEND"):
        return None
    if DEFAULT_DB_SCHEME not in available_backends():
        click.echo(
            "Using the in-memory backend: no backend is configured and the SQLite backend, the "
            "default, is not installed (jobs live in this process only). Install it with "
            f"{install_hint(DEFAULT_DB_SCHEME)}, or pass --backend or --config.",
            err=True,
        )
        return None
    named = os.environ.get(DEFAULT_DB_ENV, "").strip()
    shown = Path(named or DEFAULT_DB_FILE).expanduser().resolve()
    if named:
        why = f"from {DEFAULT_DB_ENV}; pass --backend or --config to use another"
    else:
        why = (
            f"no backend is configured: pass --backend or --config, or set {DEFAULT_DB_ENV}, "
            "to use another"
        )
    click.echo(f"Using the SQLite database {shown} ({why}).", err=True)
    return f"{DEFAULT_DB_SCHEME}:///{shown}"


def parse_backend(value: str) -> tuple[str, str | None]:
    """Split a ``--backend`` value into (type, url).

    Args:
        value: A URL such as ``redis://localhost:6379/0`` or a type name such as ``redis``.

    Returns:
        The backend type and the URL (None for a bare type name).

    Raises:
        CLIError: The value is empty, or a URL whose scheme names no known backend.
    """
    text = value.strip()
    if not text:
        msg = "--backend is empty. Pass a URL such as redis://localhost:6379/0 or a type name."
        raise CLIError(msg)
    if "://" not in text:
        if any(mark in text for mark in ":/@"):
            # Not a type name: a URL with its "://" mistyped.
            msg = (
                f"--backend {shown_url(text)!r} is neither a URL (scheme://...; its '://' is "
                f"missing or mistyped) nor a backend type name "
                f"({', '.join(available_backends())}). Write e.g. redis://localhost:6379/0."
            )
            raise CLIError(msg)
        return text.lower(), None
    check_url_syntax(text, "--backend")
    scheme = urlsplit(text).scheme.lower()
    backend_type = backend_for_scheme(scheme)
    if backend_type is None:
        first_party = FIRST_PARTY_SCHEMES.get(scheme)
        if first_party is not None:
            msg = (
                f"--backend {mask_url(text)!r} needs the {first_party} backend, which is not "
                f"installed. {missing_backend_fix(first_party)}"
            )
            raise CLIError(msg)
        known = ", ".join(f"{s}://" for s in known_schemes()) or "none"
        msg = (
            f"--backend {mask_url(text)!r} has the URL scheme {scheme!r}, which no installed "
            f"backend serves (schemes: {known}). Use one of those, or a type name "
            f"({', '.join(available_backends())})."
        )
        raise CLIError(msg)
    return backend_type, text


def check_queue_option(name: str) -> str:
    """Return a ``--queue`` value, refusing an empty one (it would name no queue anyone uses).

    Raises:
        CLIError: The name is empty or blank.
    """
    if not name.strip():
        msg = "--queue is empty. Name a queue, e.g. --queue emails, or leave the option out."
        raise CLIError(msg)
    return name


def check_backend(backend_type: str) -> None:
    """Import the backend `backend_type` now, so a typo fails with a one-line message.

    Raises:
        BackendNotFoundError: No installed backend has that type (with "did you mean").
        BackendError: The backend is installed but cannot be loaded.
    """
    load_backend(backend_type)


def resolve_spec(
    config: TaskConfig | None,
    backend: str | None = None,
    queue_name: str | None = None,
    *,
    connect_timeout: float | None = None,
) -> TaskBackendSpec:
    """Build the backend spec from the config and the ``--backend``/``--queue`` options.

    The config's primary backend (or its ``backend`` section) is the base. ``--backend``
    replaces its type and URL; the config's backend options are kept only when the type
    stays the same (another backend would reject them). With a ``backends`` list,
    ``--backend NAME`` (or ``--queue NAME``) naming a configured backend selects that
    entry instead, whole (`select_entry`).

    Args:
        config: The command's configuration (None: nothing configured, the defaults).
        backend: The ``--backend`` value, if any.
        queue_name: The ``--queue`` value, if any.
        connect_timeout: The ``--connect-timeout`` value: set as the backend's own
            connect timeout (see `with_connect_timeout`).

    Raises:
        CLIError: ``--backend`` is malformed or names a backend that is not installed.
    """
    if config is None:
        # The default backend section: the in-memory backend, no URL, no options.
        spec = TaskBackendSpec(name="default", type=DEFAULT_BACKEND, queue_name=DEFAULT_QUEUE_NAME)
        if backend is not None:
            backend_type, url = parse_backend(backend)
            spec = replace(spec, type=backend_type, url=url)
        return _finish_spec(spec, queue_name, connect_timeout)
    named = select_entry(config, backend, queue_name)
    if named is not None:
        # A configured backend, by its name (or its queue's): as the application's
        # Named() and .delay() pick it, with its own URL, options and queue.
        if queue_name is None or queue_name.strip() in (named.name, named.queue_name):
            queue_name = None
        return _configured_spec(config, named, queue_name, connect_timeout)
    entry = config.primary_backend or config.backend
    if backend is None:
        # The type is the configuration's: a typo in it is named by its field.
        return _configured_spec(config, entry, queue_name, connect_timeout)
    backend_type, url = parse_backend(backend)
    if url is None and backend_type != entry.type:
        # A bare type of another backend takes the URL the config keeps for that type
        # (``redis_url`` for redis), never the config's own `url`, which is its type's.
        url = url_of(entry.model_copy(update={"type": backend_type, "url": None}))[1]
    if backend_type != entry.type and entry.url is None:
        # The config's own URL would be dropped: not reading it spares importing its
        # backend (the default config's memory backend, for a worker given a URL).
        spec = TaskBackendSpec(
            name=getattr(entry, "name", None) or "default",
            type=backend_type,
            url=url,
            queue_name=entry.queue_name,
        )
    else:
        spec = spec_from_config(entry, path=config_path_of(entry, config))
        if backend_type == spec.type:
            spec = replace(spec, url=url or spec.url)
        else:
            spec = replace(spec, type=backend_type, url=url, options={})
    return _finish_spec(spec, queue_name, connect_timeout)


def _configured_spec(
    config: TaskConfig,
    entry: NamedTaskConfig | TaskBackendConfig,
    queue_name: str | None,
    connect_timeout: float | None,
) -> TaskBackendSpec:
    """The spec of `entry` of `config`, as it is configured (`--queue` and timeouts aside)."""
    spec = configured_spec(config, entry)
    with config_errors(spec.name):
        return _finish_spec(spec, queue_name, connect_timeout, field=backend_field(spec))


def _finish_spec(
    spec: TaskBackendSpec,
    queue_name: str | None,
    connect_timeout: float | None,
    *,
    field: str | None = None,
) -> TaskBackendSpec:
    """`spec` with ``--queue`` and ``--connect-timeout`` applied, its backend imported.

    `field` is the configuration's section the type came from, named in a failure to
    load it (as `TaskProvider` names it); None when the command line gave the type.
    """
    if queue_name is not None:
        spec = replace(spec, queue_name=check_queue_option(queue_name))
    try:
        check_backend(spec.type)
    except BackendError as exc:
        if field is None:
            raise
        raise prefixed_error(exc, field) from None
    if connect_timeout is not None:
        spec = with_connect_timeout(spec, connect_timeout)
    return spec


def existing_only(spec: TaskBackendSpec) -> TaskBackendSpec:
    """`spec` asking its backend to refuse storage that does not exist, where it can.

    Sets `MUST_EXIST_OPTION` when the backend's ``options_type`` declares it (SQLite's
    does: its file would otherwise be created, directory and all; RabbitMQ's then declares
    nothing, and counts a missing queue as empty), whatever the configuration says, since
    the commands that call this have nothing to do on a new, empty store. Any other
    backend's spec is returned unchanged.
    """
    options_type = backend_attribute(spec.type, "options_type")
    if options_type is None or MUST_EXIST_OPTION not in option_names(options_type):
        return spec
    return replace(spec, options={**spec.options, MUST_EXIST_OPTION: True})


describe = describe_backend
"""Return ``type (masked url)`` for messages and headers; never shows a password."""


def is_process_local(spec: TaskBackendSpec) -> bool:
    """Whether the backend keeps jobs inside one process (nothing another command can see)."""
    return backend_is_process_local(spec.type)


def open_queue(spec: TaskBackendSpec, queue_name: str | None = None) -> TaskQueueProtocol:
    """Build the queue for `spec` (or for another queue name on the same backend)."""
    if queue_name is not None and queue_name != spec.queue_name:
        spec = replace(spec, queue_name=queue_name)
    # The same builder as TaskProvider's (lexigram.tasks.di._stack).
    with config_errors(spec.name):
        registry = TaskBackendRegistry.with_defaults()
        return build_queue(spec, field=backend_field(spec), registry=registry)


async def close_quietly(*objects: Any) -> None:
    """Close stores and queues, ignoring errors (a command is ending anyway; logged at DEBUG)."""
    await close_each(*objects, owner="this command", level=logging.DEBUG)


async def release_backend(spec: TaskBackendSpec) -> None:
    """Close what the backend object itself holds for this event loop (shared pools).

    A command runs one event loop; its queues and stores share the backend's connection
    pools, which outlive any one of them. A backend that keeps such pools offers an
    optional ``close()`` (`ClosableBackendProtocol`); it is called when a command ends,
    as `TaskProvider` calls it at shutdown, and so is that of each backend it borrowed
    from (RabbitMQ's ``stores``), unless a provider of this process still holds one.
    """
    await release_backends([spec.type])


@dataclass(slots=True)
class Stores:
    """A backend's optional stores a command uses; None where the backend has none.

    Attributes:
        dlq_backend: Dead-letter record storage shared across processes.
        result_store: Job results.
        progress_tracker: Live progress (pub/sub).
        scheduler_store: Cron schedules.
        cache: Key-value store (the CLI registers running workers in it).
        opened: What was built here, to close at the end.
    """

    dlq_backend: Any = None
    result_store: Any = None
    progress_tracker: Any = None
    scheduler_store: Any = None
    cache: Any = None
    opened: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        """Close every store built here."""
        await close_quietly(*self.opened)


# Store -> (its factory, what a command does without it, for the log line).
_FACTORIES = {
    "dlq_backend": ("create_dlq_backend", "dead-letter records kept in this process only"),
    "result_store": ("create_result_store", IN_MEMORY),
    "progress_tracker": ("create_progress_tracker", IN_MEMORY),
    "scheduler_store": ("create_scheduler_store", "schedules kept in this process only"),
    "cache": ("create_cache_backend", "no registration of running workers (`inspect` lists none)"),
}


def open_store(spec: TaskBackendSpec, factory: str, *, fallback: str = IN_MEMORY) -> Any | None:
    """Build one optional store of the backend by its factory's name; None if it has none.

    Every command's store is built here (`open_stores` too), so an error of building it
    names the configured backend's path and the variables behind its values
    (`config_errors`). `fallback` says what the command does without the store (logged).
    """
    with config_errors(spec.name):
        return build_store(spec, factory, backend_field(spec), fallback=fallback)


def open_stores(spec: TaskBackendSpec, *names: str) -> Stores:
    """Build the named optional stores of the backend (``"dlq_backend"``, ``"cache"``, ...).

    A backend without a factory leaves that store None (the caller decides what to do).
    """
    stores = Stores()
    for name in names:
        factory, fallback = _FACTORIES[name]
        built = open_store(spec, factory, fallback=fallback)
        if built is not None:
            setattr(stores, name, built)
            stores.opened.append(built)
    return stores
