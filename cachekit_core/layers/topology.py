"""Which Redis deployment a URL names, and how to build redis-py clients for it.

- ``redis://``, ``rediss://``, ``unix://``: one server.
- ``redis+cluster://host:port`` (or ``rediss+cluster://``, or any redis URL with
  ``cluster=True``): a Redis Cluster, discovered from that seed node.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`` (or
  ``rediss+sentinel://``): the current master of ``service``, asked of the Sentinels; the
  credentials are the master's.

Every client built here has redis-py's own retries off: a dead Redis must cost one socket
timeout, not seconds of backoff; the circuit breaker decides when to try again.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import unquote

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

Kind = Literal["standalone", "cluster", "sentinel"]

_PLAIN = ("redis", "rediss", "unix")
# Secrets redis-py reads from a URL's query string.
_QUERY_SECRET = re.compile(r"((?:^|[?&;])(?:ssl_)?password=)[^&;#]*", re.IGNORECASE)


@dataclass(frozen=True)
class Topology:
    kind: Kind
    url: str  # for standalone and cluster: a URL redis-py's from_url understands
    safe_url: str  # for logs: never a password
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    master_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, *, cluster: bool = False) -> Topology:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        base, _, variant = scheme.partition("+")
        if not sep or base not in _PLAIN or variant not in ("", "cluster", "sentinel"):
            raise ConfigurationError(
                f"RedisLayer: unsupported URL scheme in {redact_url(url)!r}; use redis://, "
                "rediss://, unix://, redis+cluster:// or redis+sentinel://"
            )
        if variant == "sentinel":
            return cls._sentinel(base, rest, url)
        plain = f"{base}://{rest}"
        if variant == "cluster" or cluster:
            if base == "unix":
                raise ConfigurationError("RedisLayer: a Redis Cluster needs a host:port URL")
            db = rest.partition("?")[0].partition("/")[2]
            if db not in ("", "0"):
                raise ConfigurationError(
                    f"RedisLayer: a Redis Cluster has only database 0, not {db!r}"
                )
            return cls("cluster", plain, redact_url(url))
        return cls("standalone", plain, redact_url(url))

    def check_options(self, options: Mapping[str, Any], also: Iterable[str] = ()) -> None:
        """Refuse keywords redis-py would only reject on first use (in the listener thread
        too, where nobody would see it): typos must fail at start-up. ``also``: other names
        the caller accepts, offered as hints too (``Cache.from_url`` passes its own)."""
        known = _known_options(self.kind)
        for name in options:
            if name not in known:
                hint = difflib.get_close_matches(name, [*known, *also], n=1)
                raise ConfigurationError(
                    f"RedisLayer: unknown option {name!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )

    @classmethod
    def _sentinel(cls, base: str, rest: str, url: str) -> Topology:
        if base == "unix":
            raise ConfigurationError("RedisLayer: Sentinel URLs need host:port addresses")
        netloc, _, path = rest.partition("/")
        userinfo, _, hosts = netloc.rpartition("@")
        parts = [p for p in path.partition("?")[0].split("/") if p]
        if not hosts or not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ConfigurationError(
                f"RedisLayer: a Sentinel URL reads redis+sentinel://host:port[,host:port]/"
                f"service[/db], not {redact_url(url)!r}"
            )
        sentinels = []
        for address in hosts.split(","):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigurationError(
                    f"RedisLayer: Sentinel address {address!r} must be host:port"
                )
            sentinels.append((host.strip("[]"), int(port)))
        options: dict[str, Any] = {"db": int(parts[1]) if len(parts) == 2 else 0}
        if userinfo:
            username, _, password = userinfo.partition(":")
            options["username"] = unquote(username) or None
            options["password"] = unquote(password) or None
        if base == "rediss":
            options["ssl"] = True
        return cls("sentinel", url, redact_url(url), tuple(sentinels), unquote(parts[0]), options)

    # -- clients -------------------------------------------------------------------------------
    def sync_client(self, options: dict[str, Any]) -> redis.Redis:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = {**options, "retry": Retry(NoBackoff(), 0), "retry_on_timeout": False}
        if self.kind == "cluster":
            from redis.cluster import RedisCluster

            # RedisCluster offers the command and pipeline API the layer uses; typed as Redis
            # so the I/O code is written once.
            return cast("redis.Redis", RedisCluster.from_url(self.url, **options))
        if self.kind == "sentinel":
            import redis.sentinel

            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
                list(self.sentinels), **self._sentinel_kw(options)
            )
            master = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
                self.service, **self.master_options, **options
            )
            return cast("redis.Redis", master)
        import redis

        if options.get("max_connections"):
            pool = redis.BlockingConnectionPool.from_url(self.url, **_blocking(options))
            return redis.Redis.from_pool(pool)  # the client owns (and closes) the pool
        return redis.Redis.from_url(self.url, **options)

    def async_client(self, options: dict[str, Any]) -> redis.asyncio.Redis:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = {**options, "retry": Retry(NoBackoff(), 0)}
        if self.kind == "cluster":  # the asyncio RedisCluster takes no retry_on_timeout
            from redis.asyncio.cluster import RedisCluster

            return cast("redis.asyncio.Redis", RedisCluster.from_url(self.url, **options))
        options["retry_on_timeout"] = False
        if self.kind == "sentinel":
            import redis.asyncio.sentinel

            sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8
                list(self.sentinels), **self._sentinel_kw(options)
            )
            master = sentinel.master_for(self.service, **self.master_options, **options)
            return cast("redis.asyncio.Redis", master)
        import redis.asyncio

        # max_connections is enforced in front of the pool (see _permits.py): its
        # blocking variant would cost a task and a timeout per command.
        return redis.asyncio.Redis.from_url(self.url, **options)

    def close(self, client: redis.Redis) -> None:
        client.close()
        # A Sentinel-managed client keeps connections to the Sentinels too.
        for sentinel in _sentinels_of(client):
            sentinel.close()

    async def aclose(self, client: redis.asyncio.Redis) -> None:
        await client.aclose()
        for sentinel in _sentinels_of(client):
            await sentinel.aclose()

    @staticmethod
    def _sentinel_kw(options: dict[str, Any]) -> dict[str, Any]:
        # Sentinels are asked with the same timeouts (an unreachable Sentinel must not hang a
        # request); their own credentials, if any, come as the sentinel_kwargs option.
        own = options.pop("sentinel_kwargs", None)
        timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
        return {"sentinel_kwargs": own if own is not None else timeouts}


def redact_url(url: str) -> str:
    """``url`` without its passwords (user info and query string), for logs and messages."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    path = _QUERY_SECRET.sub(r"\1***", path)
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"


@functools.cache
def _known_options(kind: Kind) -> frozenset[str]:
    """The keywords redis-py's client for ``kind`` takes (read once per kind)."""
    import redis

    known = set(inspect.signature(redis.Redis.__init__).parameters)
    if kind == "cluster":
        from redis.cluster import RedisCluster

        known |= set(inspect.signature(RedisCluster.__init__).parameters)
    elif kind == "sentinel":
        known.add("sentinel_kwargs")
    return frozenset(known - {"self", "kwargs", "url"})


def _blocking(options: dict[str, Any]) -> dict[str, Any]:
    # Sync clients: a burst beyond max_connections waits (at most a socket timeout) for a
    # free connection instead of failing at once: redis-py's default pool raises, which
    # counted as an outage and opened the breaker under plain load.
    return {**options, "timeout": options.get("socket_timeout")}


def _sentinels_of(client: Any) -> list[Any]:
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []
