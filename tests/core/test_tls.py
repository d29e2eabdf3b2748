"""TLS (``rediss://``) end to end, against redis-server's own TLS port.

A ``trustme`` CA issues the server certificate (IP SAN 127.0.0.1) and a client certificate.
Every server here listens on its TLS port only (``--port 0``), so anything that reaches it,
the invalidation listener's pub/sub connection included, provably speaks TLS. Failures must
fail open (a miss, a logged warning, counted errors) and must never fall back to an
unverified or clear-text connection: the tests check on the server that nothing was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
import trustme

from cachekit_core import Cache, CacheUnavailable
from cachekit_core.keys import KeySpace
from tests.support.redis_server import REDIS_SERVER, RedisServer, ServerTLS

NS = "tls"
KEYS = KeySpace(NS)  # the Redis names cachekit uses, to look at the server directly
PASSWORD = "s3cr3t-Pa55"  # the ACL user's password: must never reach a log line
TIMEOUT = 1.0  # generous: TLS handshakes on a loaded 2-core machine


@dataclass(frozen=True)
class PKI:
    ca: Path  # trusted by the servers, and presented by them
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA: trusting only it must not get a client in

    def server(self, *, auth_clients: bool) -> ServerTLS:
        return ServerTLS(
            self.ca,
            self.server_cert,
            self.server_key,
            auth_clients=auth_clients,
            client_cert=self.client_cert,
            client_key=self.client_key,
        )

    def client(self, *, cert: bool = False) -> dict[str, Any]:
        """redis-py keywords of a client trusting our CA (presenting our client cert)."""
        options: dict[str, Any] = {"ssl_ca_certs": str(self.ca)}
        if cert:
            options |= {"ssl_certfile": str(self.client_cert), "ssl_keyfile": str(self.client_key)}
        return options


def _require_redis() -> None:
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: under CI this fails instead of skipping")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")  # an IP SAN: redis-py checks the hostname
    client = ca.issue_cert("cachekit-client.example")
    paths = PKI(*(directory / name for name in ("ca", "s.crt", "s.key", "c.crt", "c.key", "x")))
    ca.cert_pem.write_to_path(str(paths.ca))
    server.cert_chain_pems[0].write_to_path(str(paths.server_cert))
    server.private_key_pem.write_to_path(str(paths.server_key))
    client.cert_chain_pems[0].write_to_path(str(paths.client_cert))
    client.private_key_pem.write_to_path(str(paths.client_key))
    other.cert_pem.write_to_path(str(paths.other_ca))
    return paths


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[RedisServer]:
    _require_redis()
    with RedisServer(tls=pki.server(auth_clients=False)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki: PKI) -> Iterator[RedisServer]:
    """Demands a client certificate issued by our CA (``--tls-auth-clients yes``)."""
    _require_redis()
    with RedisServer(tls=pki.server(auth_clients=True)) as server:
        yield server


@pytest.fixture
def tls(tls_server: RedisServer) -> RedisServer:
    tls_server.cli("FLUSHALL")
    return tls_server


@pytest.fixture
def mtls(mtls_server: RedisServer) -> RedisServer:
    mtls_server.cli("FLUSHALL")
    return mtls_server


@pytest.fixture
def admin(pki: PKI) -> Iterator[Callable[[RedisServer], redis.Redis]]:
    """A trusted redis-py client (our CA and client cert) to look at a server directly."""
    clients: list[redis.Redis] = []

    def connect(server: RedisServer) -> redis.Redis:
        client = redis.Redis.from_url(server.tls_url, **pki.client(cert=True))
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def redis_stats(cache: Cache) -> dict[str, Any]:
    stats: dict[str, Any] = cache.stats()["layers"]["redis"]
    return stats


# -- the server side of the setup -------------------------------------------------------------


def test_server_listens_on_tls_only(tls: RedisServer, pki: PKI) -> None:
    assert tls.port == 0
    assert tls.cli("PING") == "PONG"  # redis-cli --tls with our CA
    # A client that does not speak TLS gets nowhere: there is no clear-text port.
    with socket.create_connection(("127.0.0.1", tls.tls_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"PING\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert not sock.recv(16).startswith(b"+PONG")


# -- TLS, server authentication only ----------------------------------------------------------


def _query_url(server: RedisServer, pki: PKI) -> str:
    return f"{server.tls_url}?ssl_cert_reqs=required&ssl_ca_certs={quote(str(pki.ca))}"


@pytest.mark.parametrize("config", ["keywords", "query-string"])
def test_sync_roundtrip(
    tls: RedisServer, pki: PKI, admin: Callable[[RedisServer], redis.Redis], config: str
) -> None:
    if config == "keywords":  # Cache.from_url -> RedisLayer -> redis-py's from_url
        cache = Cache.from_url(
            tls.tls_url, namespace=NS, l1=False, secret_key="test-secret", **pki.client()
        )
    else:  # redis-py parses unknown query arguments as connection keywords
        cache = Cache.from_url(
            _query_url(tls, pki), namespace=NS, l1=False, secret_key="test-secret"
        )
    with cache:
        cache.set("a", {"n": 1}, ttl=60, tags=["t"])
        cache.set("b", "two", ttl=60)
        assert cache.get("a") == {"n": 1}
        assert cache.get_many(["a", "b", "c"]) == {"a": {"n": 1}, "b": "two"}
        cache.invalidate_tags("t")
        assert cache.get("a", "miss") == "miss"
        assert cache.get("b") == "two"
        assert cache.delete("b")
        stats = redis_stats(cache)
    assert stats["errors"] == 0
    assert stats["hits"] >= 3
    server = admin(tls)
    assert server.exists(KEYS.entry("a")) == 1  # written to this (TLS-only) server
    assert server.exists(KEYS.entry("b")) == 0
    assert server.exists(KEYS.tag("t")) == 1  # the tag version bumped by invalidate_tags


async def test_async_roundtrip(tls: RedisServer, pki: PKI) -> None:
    async with Cache.from_url(
        tls.tls_url, namespace=NS, l1=False, secret_key="test-secret", **pki.client()
    ) as cache:
        await cache.aset("a", [1, 2], ttl=60, tags=["t"])
        assert await cache.aget("a") == [1, 2]
        await cache.ainvalidate_tags("t")
        assert await cache.aget("a", "miss") == "miss"
        assert await cache.aget_or_set("b", lambda: "loaded", ttl=60) == "loaded"
        assert await cache.aget_or_set("b", lambda: "again", ttl=60) == "loaded"
        assert redis_stats(cache)["errors"] == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lock_across_instances(
    tls: RedisServer, pki: PKI, admin: Callable[[RedisServer], redis.Redis], mode: str
) -> None:
    """Two caches (two connection pools, as two processes would have) racing for one key:
    the Redis lock, taken and released over TLS, lets exactly one loader run."""
    calls: list[int] = []

    def loader() -> str:
        calls.append(1)
        time.sleep(0.3)
        return "value"

    caches = [
        Cache.from_url(
            tls.tls_url,
            namespace=NS,
            l1=False,
            socket_timeout=TIMEOUT,
            secret_key="test-secret",
            **pki.client(),
        )
        for _ in range(2)
    ]
    results: list[Any] = []
    if mode == "sync":
        barrier = threading.Barrier(2)

        def run(cache: Cache) -> None:
            barrier.wait()
            results.append(cache.get_or_set("k", loader, ttl=60, lock=True))

        threads = [threading.Thread(target=run, args=(cache,)) for cache in caches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    else:

        async def race() -> None:
            async def aloader() -> str:
                calls.append(1)
                await asyncio.sleep(0.3)
                return "value"

            results.extend(
                await asyncio.gather(
                    *(c.aget_or_set("k", aloader, ttl=60, lock=True) for c in caches)
                )
            )
            for cache in caches:
                await cache.aclose()

        asyncio.run(race())
    for cache in caches:
        cache.close()
    assert results == ["value", "value"]
    assert len(calls) == 1
    assert sum(cache.stats()["lock_waits"] for cache in caches) >= 1
    assert all(redis_stats(cache)["errors"] == 0 for cache in caches)
    assert admin(tls).exists(KEYS.lock("k")) == 0  # released


# -- L1 invalidation over the listener's own (TLS) pub/sub connection --------------------------


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
def test_l1_invalidation_between_instances(
    request: pytest.FixtureRequest,
    pki: PKI,
    admin: Callable[[RedisServer], redis.Redis],
    mutual: bool,
) -> None:
    server: RedisServer = request.getfixturevalue("mtls" if mutual else "tls")
    options = {"namespace": NS, "socket_timeout": TIMEOUT, **pki.client(cert=mutual)}
    with (
        Cache.from_url(server.tls_url, secret_key="test-secret", **options) as a,
        Cache.from_url(server.tls_url, secret_key="test-secret", **options) as b,
    ):
        a.set("k", "v1", ttl=60, tags=["t"])
        a.set("plain", "old", ttl=60)
        assert b.get("k") == "v1"  # an L1 fill starts b's listener
        # Both listeners subscribed on the TLS-only server: they did the handshake.
        wait_for(lambda: a.stats()["layers"]["redis"]["listening"])
        wait_for(lambda: b.stats()["layers"]["redis"]["listening"])
        assert admin(server).pubsub_numsub(KEYS.channel) == [(KEYS.channel.encode(), 2)]

        assert b.get("k") == "v1"  # (re)subscribing cleared L1: this refills it
        assert b.get("plain") == "old"
        memory_hits = b.stats()["layers"]["memory"]["hits"]
        assert b.get("k") == "v1"
        assert b.get("plain") == "old"
        assert b.stats()["layers"]["memory"]["hits"] == memory_hits + 2  # served from L1

        # Without the broadcast b would serve its L1 copies for l1_ttl (30 s).
        a.invalidate_tags("t")
        a.set("plain", "new", ttl=60)
        wait_for(lambda: b.get("k", "miss") == "miss" and b.get("plain") == "new", 1.0)
        assert redis_stats(a)["errors"] == redis_stats(b)["errors"] == 0


# -- mutual TLS -------------------------------------------------------------------------------


async def test_mutual_tls_with_client_cert(mtls: RedisServer, pki: PKI) -> None:
    options = pki.client(cert=True)
    async with Cache.from_url(
        mtls.tls_url, namespace=NS, l1=False, secret_key="test-secret", **options
    ) as cache:
        cache.set("a", 1, ttl=60, tags=["t"])
        assert await cache.aget("a") == 1
        await cache.aset("b", 2, ttl=60)
        assert cache.get("b") == 2
        cache.invalidate_tags("t")
        assert await cache.aget("a", "miss") == "miss"
        assert redis_stats(cache)["errors"] == 0


def _assert_failed_open(
    cache: Cache, caplog: pytest.LogCaptureFixture, stored_key: str | None = None
) -> None:
    """Every operation degrades to a miss / no-op: no exception, errors counted, a warning."""
    if stored_key is not None:  # present on the server, but never read past a failed handshake
        assert cache.get(stored_key, "default") == "default"
    assert cache.get("absent", "default") == "default"
    cache.set("written", 1, ttl=60, tags=["t"])
    cache.invalidate_tags("t")
    assert cache.get_or_set("loaded", lambda: 42, ttl=60) == 42
    stats = redis_stats(cache)
    assert stats["errors"] >= 1
    assert stats["hits"] == 0
    failures = [
        r
        for r in caplog.records
        if r.name == "cachekit.redis"
        and r.levelno == logging.WARNING
        and "Redis call failed" in r.getMessage()
    ]
    assert failures, caplog.text


@pytest.mark.parametrize("l1", [False, True])
def test_mutual_tls_without_client_cert_fails_open(
    mtls: RedisServer,
    pki: PKI,
    admin: Callable[[RedisServer], redis.Redis],
    caplog: pytest.LogCaptureFixture,
    l1: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="cachekit")
    with Cache.from_url(
        mtls.tls_url, namespace=NS, l1=l1, secret_key="test-secret", **pki.client()
    ) as good_ca_only:
        _assert_failed_open(good_ca_only, caplog)
        assert not good_ca_only.stats()["layers"]["redis"]["listening"]
    assert admin(mtls).dbsize() == 0


# -- verification failures: never connect unverified ------------------------------------------


@pytest.mark.parametrize(
    "client",
    ["other-ca", "system-trust-store", "hostname-mismatch", "clear-text"],
)
async def test_unverified_server_fails_open(
    tls: RedisServer,
    pki: PKI,
    admin: Callable[[RedisServer], redis.Redis],
    caplog: pytest.LogCaptureFixture,
    client: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="cachekit")
    with Cache.from_url(
        tls.tls_url, namespace=NS, l1=False, secret_key="test-secret", **pki.client()
    ) as good:
        good.set("secret", "only for verified clients", ttl=60)
    options: dict[str, Any] = {"ssl_ca_certs": str(pki.other_ca)}  # the only CA it trusts
    url = tls.tls_url
    if client == "system-trust-store":
        options = {}
    elif client == "hostname-mismatch":  # our CA, but the cert names 127.0.0.1 only
        url, options = f"rediss://localhost:{tls.tls_port}/0", pki.client()
    elif client == "clear-text":
        url, options = f"redis://127.0.0.1:{tls.tls_port}/0", {}
    before = admin(tls).dbsize()

    async with Cache.from_url(url, namespace=NS, secret_key="test-secret", **options) as cache:
        _assert_failed_open(cache, caplog, stored_key="secret")
        assert await cache.aget("secret", "default") == "default"
        await cache.aset("awritten", 1, ttl=60)
    assert admin(tls).dbsize() == before  # nothing written
    expected = {"hostname-mismatch": "Hostname mismatch", "clear-text": "ConnectionError"}
    assert expected.get(client, "certificate verify failed") in caplog.text


# -- ACL user in the URL ----------------------------------------------------------------------


@pytest.fixture
def acl_server(pki: PKI, admin: Callable[[RedisServer], redis.Redis]) -> Iterator[RedisServer]:
    _require_redis()
    with RedisServer(tls=pki.server(auth_clients=False)) as server:
        # Keys and channels of namespace "ns" only; nothing @dangerous (KEYS, FLUSHALL, ...).
        admin(server).execute_command(  # type: ignore[no-untyped-call]
            "ACL", "SETUSER", "app", "on", f">{PASSWORD}", "~ns:*", "&ns:*", "+@all", "-@dangerous"
        )
        yield server


def test_acl_user_in_url(
    acl_server: RedisServer,
    pki: PKI,
    admin: Callable[[RedisServer], redis.Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    url = f"rediss://app:{PASSWORD}@127.0.0.1:{acl_server.tls_port}/0"
    options = {"socket_timeout": TIMEOUT, **pki.client()}
    with Cache.from_url(url, namespace="ns", secret_key="test-secret", **options) as cache:
        cache.set("a", "x", ttl=60, tags=["t"])
        assert cache.get_or_set("b", lambda: "y", ttl=60, lock=True) == "y"
        cache.invalidate_tags("t")
        assert cache.get("a", "miss") == "miss"
        assert cache.get("b") == "y"
        wait_for(lambda: cache.stats()["layers"]["redis"]["listening"])  # &ns:* allows it
        cache.clear()  # SCAN + UNLINK within ~ns:* (entries: tag versions only expire)
        assert redis_stats(cache)["errors"] == 0
    assert list(admin(acl_server).scan_iter(match="ns:e:*")) == []
    assert admin(acl_server).dbsize() == 1  # the tag version of "t"

    # Authenticated as "app", not as the default user: other namespaces are refused.
    with Cache.from_url(
        url, namespace="other", l1=False, secret_key="test-secret", **options
    ) as outside:
        outside.set("a", 1, ttl=60)
        assert outside.get("a", "default") == "default"
        assert redis_stats(outside)["errors"] >= 1
    assert "NoPermissionError" in caplog.text
    assert admin(acl_server).exists(KeySpace("other").entry("a")) == 0
    assert PASSWORD not in caplog.text


def test_password_never_logged(
    acl_server: RedisServer, pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pa55word"
    url = f"rediss://app:{wrong}@127.0.0.1:{acl_server.tls_port}/0"
    with Cache.from_url(url, namespace="ns", secret_key="test-secret", **pki.client()) as cache:
        _assert_failed_open(cache, caplog)
    assert "WRONGPASS" in caplog.text or "invalid username-password" in caplog.text

    with (
        Cache.from_url(
            url,
            namespace="ns",
            l1=False,
            raise_on_error=True,
            secret_key="test-secret",
            **pki.client(),
        ) as strict,
        pytest.raises(CacheUnavailable) as raised,
    ):
        strict.get("a")
    message = str(raised.value)
    assert f"rediss://127.0.0.1:{acl_server.tls_port}/0" in message  # the URL, minus userinfo
    for text in (message, caplog.text):
        assert wrong not in text
        assert PASSWORD not in text
