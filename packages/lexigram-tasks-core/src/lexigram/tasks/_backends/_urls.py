"""Backend URLs: which config field holds one, which backend its scheme selects, how it shows.

A configuration names its backend by ``type``, by a URL (``url: redis://...``), or both;
this is where the two are made to agree and where a `TaskBackendSpec` is built from a
config model (`spec_from_config`). A URL enters here too (``--backend``, ``url``), so
its syntax is checked here and every message shows it with its password masked.

The functions take the `TaskBackendRegistry` to resolve through, but never import it:
the registry builds its specs here, and with none given they read the installed
backends directly, which is all an empty registry does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lexigram.contracts.tasks import (
    BackendError,
    TaskBackendSpec,
    TaskConfigurationError,
    mask_url,
)
from lexigram.tasks._backends._entry_points import (
    backend_attribute,
    backend_for_scheme,
    known_schemes,
)

if TYPE_CHECKING:
    from lexigram.tasks._backends._registry import TaskBackendRegistry
    from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig


def url_of(
    config: NamedTaskConfig | TaskBackendConfig, *, registry: TaskBackendRegistry | None = None
) -> tuple[str, str | None]:
    """Return ``(field, url)``: the config field that holds the backend's URL, and it.

    The generic ``url`` wins; otherwise the field the backend declares as its
    ``url_field`` (e.g. ``redis_url``) is read, from `registry`'s backend when one is
    given. A backend that cannot be loaded yields ``("url", None)``: building it fails
    later with its own message.
    """
    secret = getattr(config, "url", None)
    if secret is not None:
        return "url", secret.get_secret_value() or None
    try:
        field = (
            registry.backend_attribute(config.type, "url_field")
            if registry is not None
            else backend_attribute(config.type, "url_field")
        )
    except BackendError:
        return "url", None
    value = getattr(config, field, None) if isinstance(field, str) else None
    if value is None:
        return field if isinstance(field, str) else "url", None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return str(field), text or None


def shown_url(text: str) -> str:
    """A URL-like value as a message shows it: no password, even when its ``://`` is wrong.

    `mask_url` for a URL; for a value without ``://`` (a mistyped scheme separator),
    nothing before its last ``@``, where a password would be.
    """
    if "://" in text:
        return mask_url(text)
    _, at, host = text.rpartition("@")
    return f"***@{host}" if at else text


def check_url_syntax(url: str, where: str) -> None:
    """Refuse a URL that no parser can read: a port that is not a number, a broken IPv6 host.

    A comma-separated list of hosts (a cluster, Sentinel) is accepted when each host is.

    Checked where a URL enters (``--backend``, a configuration's ``url``), so the user
    reads which URL and which part, instead of a client library's error at first use.

    Raises:
        TaskConfigurationError: Naming `where`, the URL (password masked) and the part.
    """
    try:
        parts = urlsplit(url)
        # A cluster's or Sentinel's URL lists several hosts (``amqp://u:p@a:5672,b:5672/``,
        # ``redis+sentinel://s1:26379,s2:26379/name/0``): each one is checked.
        _, _, hosts = parts.netloc.rpartition("@")
        for host in hosts.split(",") if "," in hosts else [hosts]:
            urlsplit(f"{parts.scheme}://{host}").port  # noqa: B018 - reading it is the check
    except ValueError as exc:
        shown = shown_url(url)
        named = f"{where} {shown!r}" if where.startswith("-") else f"{where} = {shown!r}"
        # The parser quotes what it read as the port, which is part of the password when
        # an unescaped "/" cut the password short: then the cause goes unquoted.
        cause = str(exc) if shown == url else "its host or port cannot be read"
        msg = (
            f"{named} is not a valid URL ({cause}). Write it as scheme://host:port/... (the "
            "port a number, an IPv6 host in brackets such as [::1], a '/' or '@' in the "
            "password written as %2F or %40)."
        )
        raise TaskConfigurationError(msg, details={"url": shown}) from None


def _unserved_url(where: str, url: str) -> TaskConfigurationError:
    """The error of a ``url`` whose scheme no installed backend serves, `type` unset."""
    schemes = ", ".join(f"{s}://" for s in known_schemes()) or "none"
    if "://" in url:
        what = f"has the scheme {urlsplit(url).scheme.lower()!r}, which no installed backend serves"
    else:
        what = "is not a URL (its '://' is missing or mistyped)"
    msg = (
        f"{where}.url = {shown_url(url)!r} {what} (schemes: {schemes}). Fix the URL, or set "
        f"{where}.type to the backend it is for."
    )
    return TaskConfigurationError(msg, details={"url": shown_url(url)})


def _type_for_url(
    config: NamedTaskConfig | TaskBackendConfig,
    field: str,
    url: str | None,
    registry: TaskBackendRegistry | None,
    where: str,
) -> str:
    """The backend type, agreeing with the scheme of the generic ``url``.

    A config that sets ``url`` and leaves ``type`` at its default gets the backend that
    serves the URL's scheme (``url: redis://...`` alone means Redis, as ``--backend
    redis://...`` does). One that sets both must make them agree.

    Raises:
        TaskConfigurationError: ``type`` names a backend that does not serve the URL's
            scheme.
    """
    if field != "url" or not url:
        return config.type
    type_set = "type" in config.model_fields_set
    check_url_syntax(url, f"{where}.url")
    if "://" not in url:
        if type_set:
            return config.type  # the backend reads its own URL, and names what is wrong
        raise _unserved_url(where, url)
    scheme = urlsplit(url).scheme.lower()
    served = (
        registry.backend_for_scheme(scheme) if registry is not None else backend_for_scheme(scheme)
    )
    if not type_set:
        if served is None:
            # Falling back to the default type would drop the URL: a typo in the scheme
            # would run on the in-memory backend and lose every job at exit.
            raise _unserved_url(where, url)
        return served
    if served is None or served == config.type:
        return config.type
    msg = (
        f"{where}.url is a {scheme}:// URL, served by the {served!r} backend, but "
        f"{where}.type is {config.type!r}. Set type: {served} (or drop type and let the "
        "URL choose), or give a URL of the backend you meant."
    )
    raise TaskConfigurationError(msg, details={"type": config.type, "scheme": scheme})


def entry_path(index: int | None) -> str:
    """The config path of entry `index` of ``tasks.backends`` (None: the ``backend`` section)."""
    return "tasks.backend" if index is None else f"tasks.backends[{index}]"


def config_path_of(
    config: NamedTaskConfig | TaskBackendConfig, within: TaskConfig | None = None
) -> str:
    """Where `config` sits in the configuration, for messages (``tasks.backends[1]``...).

    An entry of `within`'s ``backends`` list is named by its position, as every other
    message about a value of the list names it (a file's list, pydantic's locations); only
    an entry used outside a configuration, which has no position, is named by its name.
    """
    if within is not None:
        for index, entry in enumerate(within.backends):
            if entry is config:
                return entry_path(index)
    name = getattr(config, "name", None)  # only the entries of tasks.backends have one
    return f"tasks.backends[{name}]" if name else "tasks.backend"


def backend_type_of(
    config: NamedTaskConfig | TaskBackendConfig,
    *,
    registry: TaskBackendRegistry | None = None,
    path: str | None = None,
) -> str:
    """The backend `config` selects: its ``type``, or, with ``type`` unset, the URL's.

    The type `spec_from_config` gives the factory, so what checks a configuration
    (`TaskConfig.validate_for_environment`) and what builds the backend agree.

    Raises:
        TaskConfigurationError: The URL cannot be read, no installed backend serves its
            scheme (``type`` unset), or ``type`` names a backend that does not serve it.
            It names `config` by `path` (default: `config_path_of`).
    """
    field, url = url_of(config, registry=registry)
    return _type_for_url(config, field, url, registry, path or config_path_of(config))


def spec_from_config(
    config: NamedTaskConfig | TaskBackendConfig,
    *,
    name: str | None = None,
    registry: TaskBackendRegistry | None = None,
    path: str | None = None,
) -> TaskBackendSpec:
    """Build the `TaskBackendSpec` a backend factory receives from a config model.

    The generic `url` wins; otherwise the backend's own ``url_field`` is read (see
    `url_of`). Secrets are unwrapped here and nowhere else.

    Args:
        config: A `NamedTaskConfig` or a `TaskBackendConfig`.
        name: The backend name (defaults to the config's `name`, or "default").
        registry: Where the backend's self-description is read (its registrations
            first); None reads the installed entry points only.
        path: Where `config` sits, for messages (``tasks.backends[1]``; default:
            `config_path_of`, which knows no position).

    Returns:
        The spec.
    """
    field, url = url_of(config, registry=registry)
    return TaskBackendSpec(
        name=name or getattr(config, "name", None) or "default",
        type=_type_for_url(config, field, url, registry, path or config_path_of(config)),
        url=url,
        queue_name=config.queue_name,
        options=dict(config.options),
    )
