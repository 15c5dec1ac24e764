"""Redis behind Sentinel: every connection goes to the primary the sentinels name now.

A ``redis+sentinel://`` URL lists sentinels instead of a server::

    redis+sentinel://[user:password@]host1:26379,host2:26379/<service_name>[/<db>]

The user and password are those of the data nodes (primary and replicas); the sentinels
are reached without credentials. `SentinelRoute` turns such a URL into

- a redis-py client from ``Sentinel.master_for`` (pooled commands, BLPOP, pub/sub): its
  pool asks the sentinels for the primary before every new connection and drops a
  connection that meets READONLY (a demoted primary);
- `locate`, which the multiplexed connections (`_mux.py`) call before every connect, so
  they too land on the current primary.

Nothing here retries: after a failover the old connections fail, and
`RedisConnector.call` retries within its budget; each retry connects afresh and so asks
the sentinels again.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from lexigram.contracts.tasks import TaskConfigurationError, mask_url
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
"""URL scheme of a Redis primary found through Sentinel."""

DEFAULT_SENTINEL_PORT = 26379
_PORT_LIMIT = 65536

# Options that also shape the connections to the sentinels; the rest (client name, pool
# size, credentials) belong to the data nodes only.
_SENTINEL_OPTIONS = ("socket_connect_timeout", "socket_timeout", "socket_keepalive", "retry")


def _bad(url: str, problem: str) -> TaskConfigurationError:
    msg = (
        f"Redis Sentinel URL {mask_url(url)!r} {problem}. Write it as "
        "redis+sentinel://[user:password@]host1:26379,host2:26379/<service_name>/<db>."
    )
    return TaskConfigurationError(msg, details={"url": mask_url(url)})


def _address(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep:
        host, port = port, str(DEFAULT_SENTINEL_PORT)
    host = host.strip("[]")  # an IPv6 literal
    if not host or not port.isdigit() or not 0 < int(port) < _PORT_LIMIT:
        raise _bad(url, f"has an unusable sentinel address {item.strip()!r}")
    return host, int(port)


class SentinelTarget(NamedTuple):
    """What a ``redis+sentinel://`` URL says (the password is never printed).

    Attributes:
        sentinels: ``(host, port)`` of every sentinel, in the URL's order.
        service_name: The name the sentinels monitor the primary under.
        db: Database number on the primary.
        username: ACL user of the data nodes (None: the default user).
        password: Password of the data nodes (None: none).
    """

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """Read a ``redis+sentinel://`` URL.

        Raises:
            TaskConfigurationError: The URL lacks sentinels or a service name, or has an
                unusable port or database.
        """
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise _bad(url, f"has scheme {parts.scheme!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        user, has_password, password = userinfo.partition(":")
        sentinels = tuple(_address(url, item) for item in hosts.split(",") if item.strip())
        if not sentinels:
            raise _bad(url, "names no sentinel")
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not path:
            raise _bad(url, "names no service (the name the sentinels monitor)")
        if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):  # noqa: PLR2004
            raise _bad(url, "has a path other than /<service_name>/<db>")
        return cls(
            sentinels=sentinels,
            service_name=path[0],
            db=int(path[1]) if len(path) == 2 else 0,  # noqa: PLR2004
            username=unquote(user) or None,
            password=unquote(password) if has_password else None,
        )

    def __repr__(self) -> str:
        # A tuple's repr would show the password; a log line or a traceback must not.
        password = None if self.password is None else "***"
        return (
            f"SentinelTarget(sentinels={self.sentinels!r}, service_name={self.service_name!r}, "
            f"db={self.db!r}, username={self.username!r}, password={password!r})"
        )

    def node_url(self, host: str = "localhost", port: int = 6379) -> str:
        """A ``redis://`` URL with the data nodes' credentials and database.

        The multiplexed client reads credentials and database from it; the address is
        only a placeholder, since `SentinelRoute.locate` gives the real one.
        """
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        elif self.username:
            auth = f"{quote(self.username, safe='')}@"
        return f"redis://{auth}{host}:{port}/{self.db}"


class SentinelRoute:
    """The sentinels of one connector: clients and primary look-ups, per event loop.

    A redis-py `Sentinel` holds connections to the sentinels, which are bound to the
    event loop that opened them; each loop gets its own.

    Args:
        url: The ``redis+sentinel://`` URL.
        options: The connector's connection options (timeouts, keepalive, pool size,
            client name, ...).
    """

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        self.target = SentinelTarget.parse(url)
        tls = sorted(name for name in options if name.startswith("ssl"))
        if tls:
            # redis-py's sentinel-managed connections would fail on them only when connecting.
            msg = (
                f"Redis Sentinel URL {mask_url(url)!r} came with TLS options ({', '.join(tls)}); "
                "TLS behind Sentinel is not supported yet. Drop them, or use a rediss:// "
                "URL of one server."
            )
            raise TaskConfigurationError(msg, details={"url": mask_url(url)})
        self._options = dict(options)
        self._managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sentinel] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        where = ",".join(f"{host}:{port}" for host, port in self.target.sentinels)
        return f"SentinelRoute(sentinels={where!r}, service={self.target.service_name!r})"

    def _manager(self) -> Sentinel:
        loop = asyncio.get_running_loop()
        manager = self._managers.get(loop)
        if manager is None:
            options = {k: self._options[k] for k in _SENTINEL_OPTIONS if k in self._options}
            manager = Sentinel(  # type: ignore[no-untyped-call]
                list(self.target.sentinels), sentinel_kwargs=options
            )
            self._managers[loop] = manager
        return manager

    def client(self) -> Any:
        """A redis-py client whose every connection goes to the current primary."""
        target = self.target
        return self._manager().master_for(
            target.service_name,
            db=target.db,
            username=target.username,
            password=target.password,
            **self._options,
        )

    async def locate(self) -> tuple[str, int]:
        """Ask the sentinels for the primary's address now.

        Raises:
            redis.asyncio.sentinel.MasterNotFoundError: No sentinel answered, or none
                knows a primary it considers up (a redis-py ``ConnectionError``, so the
                connector retries it as an outage).
        """
        host, port = await self._manager().discover_master(self.target.service_name)
        return str(host), int(port)

    async def close(self) -> None:
        """Close the running loop's connections to the sentinels."""
        manager = self._managers.pop(asyncio.get_running_loop(), None)
        if manager is not None:
            for sentinel in manager.sentinels:
                await sentinel.aclose()
