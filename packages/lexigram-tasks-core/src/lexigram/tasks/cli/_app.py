"""Loading the APP argument of ``worker`` and ``scheduler``.

APP is one of:

* ``package.module:name`` where ``name`` is a `TaskProvider` (its handler registry,
  config, queue and schedules are used), a `HandlerRegistry`, a dict of task name ->
  handler, one ``@task`` function, or a function taking no arguments that returns
  one of these (a factory);
* ``package.module``: every ``@task``/``@scheduled`` function and every
  `HandlerRegistry` defined in the module;
* a path to a YAML config file whose tasks section names the handlers in
  ``extra.app`` (one APP string, or a list of them), e.g.::

      tasks:
        backend: {type: redis, url: "${REDIS_URL}"}
        extra: {app: "myapp.tasks"}

The current directory is put on ``sys.path`` first, as ``python -m`` would, so
``lexigram-tasks worker myapp.tasks`` works from the project's root.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lexigram.contracts.tasks import JobTemplate, TaskQueueProtocol
from lexigram.tasks._backends import TaskBackendRegistry, adopt_backend
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.constants import scheduled_task_id
from lexigram.tasks.decorators import TaskFunction, schedule_template
from lexigram.tasks.execution import HandlerRegistry

if TYPE_CHECKING:
    from lexigram.tasks.config import TaskConfig
    from lexigram.tasks.hooks import HookRegistry
    from lexigram.tasks.middleware import TaskMiddlewarePipeline

_YAML_SUFFIXES = (".yaml", ".yml")
_APP_KEY = "app"
_KINDS = (
    "a TaskProvider, a HandlerRegistry, a dict of task name -> handler, a factory "
    "function returning one, a module with @task functions, or a YAML config file"
)


logger = logging.getLogger("lexigram.tasks.cli")


class Schedule(NamedTuple):
    """One cron schedule the APP declares.

    Attributes:
        schedule_id: Stable id (the same in every scheduler process, so each fire
            happens once).
        template: What each fire enqueues.
        cron: The cron expression.
        timezone: The IANA timezone it is evaluated in (a `TaskProvider`'s schedule
            carries its own); None for the scheduler's (``tasks.scheduler.timezone``).
    """

    schedule_id: str
    template: JobTemplate
    cron: str
    timezone: str | None = None


@dataclass(slots=True)
class LoadedApp:
    """What an APP contributes to a worker or scheduler.

    Attributes:
        source: The APP argument as given.
        handlers: Task name -> handler.
        schedules: Cron schedules (``@scheduled`` functions, the provider's scheduler).
        config: The config the APP carries (a provider's, or the YAML file's), or None.
        queue: A provider's queue object, used when no ``--backend`` is given.
        watch_paths: Directories (recursive) or files ``--reload`` watches.
        middleware_pipeline: A provider's middleware, run around every job.
        hooks: A provider's hook registry (its observers, its metrics), which the
            worker's job events feed as they feed it under the provider.
        dashboard: A provider's dashboard, fed by the worker's job events.
        explicit_settings: A provider's constructor settings that win over any
            configuration (`TaskProvider.explicit_settings`), applied by
            `with_explicit_settings`.
    """

    source: str
    handlers: HandlerRegistry = field(default_factory=HandlerRegistry)
    schedules: list[Schedule] = field(default_factory=list)
    config: TaskConfig | None = None
    queue: TaskQueueProtocol | None = None
    watch_paths: list[Path] = field(default_factory=list)
    middleware_pipeline: TaskMiddlewarePipeline | None = None
    hooks: HookRegistry | None = None
    dashboard: Any = None
    explicit_settings: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: LoadedApp) -> None:
        """Add `other`'s handlers (with their options), schedules and watch paths to this app.

        What only one runtime can have (a config, a queue, a provider's middleware,
        hooks and dashboard) is taken from the first APP that has it.
        """
        for name, handler in other.handlers.items():
            self.handlers.register(name, handler, options=other.handlers.options(name))
        self.schedules.extend(other.schedules)
        self.watch_paths.extend(other.watch_paths)
        for name in ("config", "queue", "middleware_pipeline", "hooks", "dashboard"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(other, name))
        if not self.explicit_settings:
            self.explicit_settings = dict(other.explicit_settings)

    def with_explicit_settings(self, config: TaskConfig | None) -> TaskConfig | None:
        """`config` with the provider's constructor settings over it, as the provider has them.

        ``TaskProvider(worker_count=3)`` runs three workers per queue whatever its
        configuration says; ``worker APP:provider`` (even with ``--config``) does too.
        """
        if config is None or not self.explicit_settings:
            return config
        sections: dict[str, dict[str, Any]] = {}
        for path, value in self.explicit_settings.items():
            section, _, key = path.partition(".")
            sections.setdefault(section, {})[key] = value
        updates = {
            section: getattr(config, section).model_copy(update=values)
            for section, values in sections.items()
        }
        return config.model_copy(update=updates)


def _ensure_cwd_on_path() -> None:
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _is_config_path(source: str) -> bool:
    return source.lower().endswith(_YAML_SUFFIXES) or (":" not in source and Path(source).is_file())


def load_app(source: str) -> LoadedApp:
    """Load an APP (see the module docstring).

    Args:
        source: ``module:name``, ``module`` or a YAML file path.

    Returns:
        The handlers, schedules, config and queue the APP provides.

    Raises:
        CLIError: The module cannot be imported, the name does not exist, or the object
            holds no task handlers.
        TaskConfigurationError: The YAML file is invalid.
    """
    text = source.strip()
    if not text:
        msg = f"APP is empty. Pass {_KINDS}, e.g. myapp.tasks or myapp.tasks:registry."
        raise CLIError(msg)
    module_part = text.partition(":")[0]
    if module_part.endswith(".py"):
        # A file name given for a module: import machinery would read "app.py" as the
        # submodule "py" of "app", and a YAML parser would read Python as YAML.
        dotted = module_part[: -len(".py")].replace("/", ".").replace("\\", ".").strip(".")
        msg = (
            f"APP {text!r} is a file name; APP is a module name, as Python imports it. "
            f"Pass {dotted + text[len(module_part) :]!r} (run from the directory holding it)."
        )
        raise CLIError(msg)
    if _is_config_path(text):
        return _load_config_app(text)
    _ensure_cwd_on_path()
    module_name, _, attr = text.partition(":")
    module = _import(module_name, text)
    app = LoadedApp(source=text, watch_paths=_watch_paths(module))
    if not attr:
        _collect_module(module, app)
        if not app.handlers:
            msg = (
                f"Module {module_name!r} (APP {text!r}) defines no @task function and no "
                "HandlerRegistry. Decorate your handlers with @task, or point APP at the "
                "object that holds them, e.g. myapp.tasks:registry."
            )
            raise CLIError(msg)
        return app
    obj = _attribute(module, module_name, attr, text)
    _collect_object(obj, app, text)
    return app


def _load_config_app(path: str) -> LoadedApp:
    if not Path(path).is_file():
        msg = (
            f"APP {path!r} looks like a config file, but there is no such file. Check the "
            "path, or pass a module such as myapp.tasks."
        )
        raise CLIError(msg)
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415 - a config file is read

    config = TaskConfig.from_yaml(path)
    refs = config.extra.get(_APP_KEY)
    if isinstance(refs, str):
        refs = [refs]
    if not refs or not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        msg = (
            f"Config file {path!r} names no task handlers. Add `extra: {{app: "
            '"myapp.tasks"}` to its tasks section (a module or module:object, or a list '
            "of them), or pass the module as APP and the file as --config."
        )
        raise CLIError(msg)
    app = LoadedApp(source=path, config=config, watch_paths=[Path(path).resolve()])
    for ref in refs:
        if _is_config_path(ref):
            msg = (
                f"Config file {path!r} names another config file {ref!r} as its app. Name a module."
            )
            raise CLIError(msg)
        app.merge(load_app(ref))
    app.config = config
    return app


def _import(module_name: str, source: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            msg = (
                f"Cannot import {module_name!r} (APP {source!r}): there is no module named "
                f"{missing!r}. Check the spelling, run from your project's directory, or add "
                "its directory to PYTHONPATH."
            )
        else:
            msg = (
                f"Importing {module_name!r} (APP {source!r}) failed: it needs the module "
                f"{missing!r}, which is not installed. Install it in this environment."
            )
        raise CLIError(msg) from exc
    except Exception as exc:
        msg = (
            f"Importing {module_name!r} (APP {source!r}) raised {type(exc).__name__}: "
            f"{str(exc).rstrip('.')}. "
            "Fix the error in your module (--debug shows the traceback)."
        )
        raise CLIError(msg) from exc


def _attribute(module: types.ModuleType, module_name: str, attr: str, source: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(name for name, value in vars(module).items() if _holds_tasks(value))
            hint = f" Candidates there: {', '.join(found)}." if found else ""
            msg = (
                f"Module {module_name!r} has no attribute {attr!r} (APP {source!r}).{hint} "
                "Check the name after the colon."
            )
            raise CLIError(msg)
        obj = getattr(obj, part)
    return obj


def _holds_tasks(value: object) -> bool:
    return isinstance(value, HandlerRegistry | TaskFunction) or _is_provider(value)


def _is_provider(obj: object) -> bool:
    """A `TaskProvider` (duck-typed: its registry is a `HandlerRegistry`)."""
    return not isinstance(obj, type) and isinstance(getattr(obj, "registry", None), HandlerRegistry)


def _call_factory(obj: Any, source: str) -> Any:
    """Call a plain function APP (a factory) and return what it builds."""
    try:
        inspect.signature(obj).bind()
    except TypeError:
        msg = (
            f"APP {source!r} is a function that needs arguments. Point APP at the object "
            "itself, or at a function that takes no arguments and returns a TaskProvider, "
            "a HandlerRegistry or a dict of task name -> handler."
        )
        raise CLIError(msg) from None
    try:
        built = obj()
    except Exception as exc:
        cause = str(exc).rstrip(".")
        msg = f"Calling APP {source!r} raised {type(exc).__name__}: {cause}. Fix the factory."
        raise CLIError(msg) from exc
    if inspect.isawaitable(built):
        close = getattr(built, "close", None)
        if close is not None:
            close()  # an un-awaited coroutine would warn
        msg = f"APP {source!r} is an async function. Make the factory a plain function."
        raise CLIError(msg)
    return built


def _collect_object(obj: Any, app: LoadedApp, source: str) -> None:
    if inspect.isfunction(obj):
        obj = _call_factory(obj, source)
    if _is_provider(obj):
        _collect_provider(obj, app)
    elif isinstance(obj, HandlerRegistry):
        app.handlers = obj
    elif isinstance(obj, TaskFunction):
        _add_task_function(obj, app)
    elif isinstance(obj, types.ModuleType):
        _collect_module(obj, app)
    elif isinstance(obj, Mapping):
        _collect_mapping(obj, app, source)
    else:
        kind = type(obj).__name__
        msg = f"APP {source!r} is a {kind}, which holds no task handlers. Point it at {_KINDS}."
        raise CLIError(msg)
    if not app.handlers:
        msg = f"APP {source!r} has no task handlers registered. Register at least one handler."
        raise CLIError(msg)


def _collect_mapping(obj: Mapping[Any, Any], app: LoadedApp, source: str) -> None:
    for name, handler in obj.items():
        if not isinstance(name, str) or not callable(handler):
            msg = (
                f"APP {source!r} is a dict, but its entry {name!r}: {handler!r} is not "
                "task name -> handler function. Map each task name to its function."
            )
            raise CLIError(msg)
        app.handlers.register(name, handler)


def _collect_provider(provider: Any, app: LoadedApp) -> None:
    app.handlers = provider.registry
    # A provider has imported the configuration models already.
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415

    config = getattr(provider, "config", None)
    if isinstance(config, TaskConfig):
        app.config = config
    queue = getattr(provider, "queue", None)
    if queue is not None:
        app.queue = queue
    # What the provider would run its pools with, so that `worker APP:provider` runs the
    # jobs as the provider booted in the application does.
    app.middleware_pipeline = getattr(provider, "middleware_pipeline", None)
    app.hooks = getattr(provider, "hooks", None)
    app.dashboard = getattr(provider, "dashboard", None)
    app.explicit_settings = dict(getattr(provider, "explicit_settings", None) or {})
    _adopt_backends(provider, app)
    scheduler = getattr(provider, "scheduler", None)
    if scheduler is None:
        return
    for job in scheduler.get_scheduled_jobs():
        # A schedule with no timezone of its own follows the command's configuration
        # (``tasks.scheduler.timezone``), as it follows the provider's.
        timezone = scheduler.declared_timezone(job.job_id)
        app.schedules.append(Schedule(job.job_id, job.job_template, job.cron_expression, timezone))


def _adopt_backends(provider: Any, app: LoadedApp) -> None:
    """Resolve the backends the provider registered in code as the provider does.

    The commands find a backend type through the process's lookup (`load_backend`); a
    type only the provider's `TaskBackendRegistry` knows is adopted into it, so the
    command builds what the provider would. A registration over an installed backend is
    not: the installed one serves the command, and the log says so.
    """
    registry = getattr(provider, "backend_registry", None)
    if not isinstance(registry, TaskBackendRegistry):
        return
    for backend_type, backend in registry.registrations().items():
        if not adopt_backend(backend_type, backend):
            logger.warning(
                "APP %r registers the task backend %r in code over the installed one; "
                "lexigram-tasks commands use the installed backend %r.",
                app.source,
                backend_type,
                backend_type,
            )


def _add_task_function(function: TaskFunction[Any, Any], app: LoadedApp) -> None:
    name = function.name
    app.handlers.register(name, function, options=function.options)
    if function.cron:
        template = schedule_template(name, function.options)
        app.schedules.append(Schedule(scheduled_task_id(name), template, function.cron))


def _collect_module(module: types.ModuleType, app: LoadedApp) -> None:
    classes: list[str] = []
    for value in list(vars(module).values()):
        if isinstance(value, TaskFunction):
            _add_task_function(value, app)
        elif isinstance(value, HandlerRegistry):
            for name, handler in value.items():
                app.handlers.register(name, handler, options=value.options(name))
        elif isinstance(value, type) and value.__module__ == module.__name__:
            # Imported only for an APP that defines classes: the worker's start stays lean.
            from lexigram.tasks.di._handlers import is_handler_class  # noqa: PLC0415

            if is_handler_class(value):
                classes.append(value.__qualname__)
    if classes:
        # Their instances come from an application's container, which a command has not.
        logger.warning(
            "APP %s defines task handler class(es) %s: this command does not run their "
            "tasks or schedules (they are built by an application's container). Run them "
            "under your Application's TaskProvider (see docs/application.md).",
            module.__name__,
            ", ".join(sorted(classes)),
        )


def _watch_paths(module: types.ModuleType) -> list[Path]:
    """The top-level package's directory, or the module's own file."""
    top = module.__name__.partition(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    origin = getattr(module, "__file__", None)
    return [Path(origin)] if origin else []
