"""Issue 11, item 9: the in-process layer is bounded by bytes by default, charges each entry its
real (serialized) size at any nesting depth, and a page's query-parameter allow-list caps the
variants junk query strings can create."""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis

from cachekit_core import Cache, MemoryLayer, http
from cachekit_core.entry import Entry
from cachekit_core.httpcache import HIT, MISS, HttpCache, Request, Response, ViewOptions
from cachekit_core.layers import memory
from cachekit_core.layers.memory import DEFAULT_MAX_BYTES, ENTRY_OVERHEAD, measure

MIB = 1024 * 1024
SECRET = "test-secret"


def charged(layer: Any) -> int:
    """What the layer should be charging for what it holds: each value's serialized size
    plus its key and the fixed per-entry overhead."""
    return sum(e.size + len(k) + ENTRY_OVERHEAD for k, e in layer.data.items())


def traced() -> int:
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    return current


@pytest.fixture
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- the default bound


def test_the_default_in_process_layer_is_bounded_by_bytes(redis_url: str) -> None:
    assert DEFAULT_MAX_BYTES == 64 * MIB
    assert MemoryLayer().max_bytes == DEFAULT_MAX_BYTES
    local = Cache().local
    assert local is not None and local.stats()["max_bytes"] == DEFAULT_MAX_BYTES
    with Cache.from_url(redis_url, secret_key=SECRET) as shared:
        assert shared.local is not None and shared.local.stats()["max_bytes"] == 64 * MIB
    with Cache.from_url(redis_url, secret_key=SECRET, l1_max_bytes=MIB) as small:
        assert small.local is not None and small.local.stats()["max_bytes"] == MIB
    # Unbounded only when asked for explicitly.
    assert MemoryLayer(max_bytes=None).max_bytes is None
    with Cache.from_url(redis_url, secret_key=SECRET, l1_max_bytes=None) as unbounded:
        assert unbounded.local is not None and unbounded.local.stats()["max_bytes"] is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "64M", True])
def test_max_bytes_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(Exception, match="max_bytes"):
        MemoryLayer(max_bytes=bad)


def test_junk_query_strings_of_large_pages_stay_within_the_default_bound(tracing: None) -> None:
    """The reported attack: distinct junk query strings of a large page. Before, Cache() kept
    every one (3,000 of 180 KB took a process from 58 to 611 MB)."""
    cache = Cache()
    pages = HttpCache(cache)
    view = ViewOptions(ttl=600)
    size, count = 128 * 1024, 700  # ~90 MB of distinct pages, well past 64 MiB
    before = traced()
    for i in range(count):
        request = Request("GET", "http", "shop.example", "/search", f"q=x&junk={i}", [])
        lookup = pages.lookup(request, view)
        assert lookup.state == MISS
        body = os.urandom(size)  # distinct bytes, held by nothing but the cache afterwards
        pages.store(lookup, Response(200, [("Content-Type", "text/html")], body))
        del body
    grown = traced() - before
    stats = cache.stats()["layers"]["memory"]
    assert stats["size"] <= DEFAULT_MAX_BYTES
    assert stats["entries"] < count  # the oldest pages were evicted
    assert stats["size"] == charged(cache.local)
    assert stats["size"] > DEFAULT_MAX_BYTES - 2 * size  # the bound is used, not undershot
    # The real memory held is the accounted one, give or take the per-entry objects.
    assert grown <= DEFAULT_MAX_BYTES * 1.05, f"{grown / MIB:.1f} MiB held"


# --------------------------------------------------------------------------- exact sizes


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {f"level{level}": [value]}
    return value


def test_nested_values_are_charged_at_every_depth(tracing: None) -> None:
    """The old estimate stopped at depth 4: 200 MiB were held while the layer counted
    0.16 MiB. Every byte counts now, however deep it sits."""
    cache = Cache([MemoryLayer(max_bytes=2 * MIB)])
    leaf_size = 300 * 1024
    before = traced()
    for i in range(20):  # 6 MB of values, three times the bound
        cache.set(f"deep{i}", nested(8, os.urandom(leaf_size)))
    grown = traced() - before
    local = cache.local
    assert local is not None
    stats = cache.stats()["layers"]["memory"]
    assert stats["size"] <= 2 * MIB and stats["entries"] <= 6
    assert stats["size"] == charged(local)
    for entry in local.data.values():
        assert entry.size == len(msgpack.packb(entry.value, use_bin_type=True))
        assert entry.size > leaf_size
    assert grown <= 2 * MIB * 1.1 + 256 * 1024, f"{grown / MIB:.2f} MiB held"
    # One value larger than the whole layer, deep down: not kept at all.
    cache.set("huge", nested(10, b"x" * (3 * MIB)))
    assert cache.get("huge") is None


def test_values_msgpack_cannot_encode_are_measured_in_full() -> None:
    class Row:
        __slots__ = ("payload",)

        def __init__(self, payload: bytes) -> None:
            self.payload = payload

    class Doc:
        def __init__(self) -> None:
            self.rows = {Row(os.urandom(100_000)), Row(os.urandom(100_000))}

    deep_list: list[Any] = [b"y" * 50_000]
    for _ in range(2000):  # deeper than msgpack (or Python) recurses
        deep_list = [deep_list]
    assert measure({"doc": Doc()}) > 200_000  # sets of slotted objects, inside msgpack data
    assert measure(Doc()) > 200_000
    assert measure(deep_list) > 50_000
    layer = MemoryLayer(max_bytes=150_000)
    layer.set("doc", Entry(Doc(), float("inf"), float("inf")))
    assert layer.get("doc") is None  # 200 KB: larger than the layer


def test_keys_are_charged_too() -> None:
    """Junk URLs make long keys: a page of a few bytes under a 2 KB key costs 2 KB."""
    cache = Cache([MemoryLayer(maxsize=100_000, max_bytes=MIB)])
    for i in range(5000):
        cache.set(f"{i}:" + "j" * 2000, 1)
    stats = cache.stats()["layers"]["memory"]
    assert stats["size"] <= MIB and stats["entries"] < MIB // 2000


def test_entries_from_redis_are_charged_their_uncompressed_serialized_size(
    redis_url: str, tracing: None
) -> None:
    """Reads fill L1 from Redis: the codec records the size it decoded (uncompressed: a
    compressed page's blob is much smaller than the page held in memory)."""
    writer = Cache.from_url(redis_url, namespace="pages", secret_key=SECRET, l1=False)
    reader = Cache.from_url(redis_url, namespace="pages", secret_key=SECRET, l1_max_bytes=2 * MIB)
    try:
        page_size = 100 * 1024
        for i in range(60):  # 6 MB of compressible pages
            writer.set(f"p{i}", {"b": (b"<p>item %d</p>" % i) * (page_size // 12), "i": i})
        blob = redis.Redis.from_url(redis_url).get(writer.keyspace.entry("p0"))
        assert blob is not None and len(blob) < page_size // 4  # stored compressed
        before = traced()
        for i in range(60):
            assert reader.get(f"p{i}")["i"] == i
        grown = traced() - before
        local = reader.local
        assert local is not None
        stats = reader.stats()["layers"]["memory"]
        assert 0 < stats["entries"] < 60 and stats["size"] <= 2 * MIB
        assert stats["size"] == charged(local)
        for entry in local.data.values():
            assert entry.size == len(msgpack.packb(entry.value, use_bin_type=True))
            assert entry.size > page_size  # not the ~2 KB compressed blob
        assert grown <= 2 * MIB * 1.25 + 512 * 1024, f"{grown / MIB:.2f} MiB held"
    finally:
        writer.close()
        reader.close()


def test_entries_written_through_redis_are_charged_what_was_encoded(redis_url: str) -> None:
    with Cache.from_url(redis_url, secret_key=SECRET) as cache:
        small = {"name": "ada", "tags": ["a", "b"]}  # inline msgpack body
        big = "z" * 10_000  # above compress_threshold: serialized, then compressed
        cache.set("small", small)
        cache.set("big", big)
        local = cache.local
        assert local is not None
        assert local.data["big"].size == len(msgpack.packb(big, use_bin_type=True))
        assert local.data["small"].size >= len(msgpack.packb(small, use_bin_type=True))
        assert cache.stats()["layers"]["memory"]["size"] == charged(local)


def test_sizes_are_never_measured_on_the_read_path(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []

    def counting(value: Any) -> int:
        calls.append(value)
        return measure(value)

    monkeypatch.setattr(memory, "measure", counting)
    memory_only = Cache()
    memory_only.set("k", {"v": 1})
    assert len(calls) == 1  # measured once, when stored
    for _ in range(5):
        assert memory_only.get("k") == {"v": 1}
    assert len(calls) == 1
    # With Redis the codec knows the size: neither writes nor L1 fills measure anything.
    with (
        Cache.from_url(redis_url, secret_key=SECRET) as a,
        Cache.from_url(redis_url, secret_key=SECRET) as b,
    ):
        a.set("k", {"v": 2})
        assert b.get("k") == {"v": 2} and b.get("k") == {"v": 2}
    assert len(calls) == 1


def test_a_custom_sizeof_still_decides() -> None:
    layer = MemoryLayer(max_bytes=10 * (100 + 2 + ENTRY_OVERHEAD), sizeof=lambda value: 100)
    cache = Cache([layer])
    for i in range(30):
        cache.set(f"{i:02d}", "v" * (1_000_000 if i == 29 else 1))
    assert len(layer) == 10 and cache.get("29") is not None


# --------------------------------------------------------------------------- query allow-list


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("q=shoes", "q=shoes"),
        ("utm_source=x&q=shoes&utm_campaign=y", "q=shoes"),
        ("q=shoes&junk=1&page=2", "page=2&q=shoes"),
        ("p%61ge=2&q=shoes", "p%61ge=2&q=shoes"),  # what the view reads as page: in the key
        ("pa+ge=2&q=a+b", "q=a+b"),  # "pa ge" is not "page"
        ("x=1&&y=2", ""),
        ("page&q=", "page&q="),
        ("q=1&q=2&zz=3", "q=1&q=2"),  # repeats keep their order
    ],
)
def test_normalise_query_keeps_only_allowed_parameters(query: str, key: str) -> None:
    assert http.normalise_query(query, frozenset({"q", "page"})) == key
    assert http.normalise_query(query) == http.normalise_query(query, None)


def test_allowed_names_are_matched_as_the_app_decodes_them() -> None:
    assert http.query_param_names("page") == ("page",)
    assert http.query_param_names("p%61ge") == ("page",)
    assert http.query_param_names("p%C3%A1gina") == ("página",)
    # Raw UTF-8 bytes (read as latin-1 by the server): Django reads UTF-8, Starlette latin-1.
    assert set(http.query_param_names("p\xc3\xa1gina")) == {"página", "p\xc3\xa1gina"}
    assert http.normalise_query("p\xc3\xa1gina=1&x=2", frozenset({"página"})) == "p\xc3\xa1gina=1"


def test_request_cache_key_with_an_allow_list() -> None:
    def key(query: str, allow: frozenset[str] | None) -> str:
        return http.request_cache_key("GET", "http", "h", "/s", query, (), [], query_params=allow)

    allow = frozenset({"q"})
    assert key("q=1&utm=a", allow) == key("utm=b&q=1", allow) == key("q=1", None)
    assert key("q=1", allow) != key("q=2", allow)
    assert key("q=1&utm=a", None) != key("q=1", None)


def test_view_options_check_and_freeze_the_allow_list() -> None:
    assert ViewOptions(query_params=["page", "sort"]).query_params == frozenset({"page", "sort"})
    assert ViewOptions(query_params=()).query_params == frozenset()
    assert ViewOptions().query_params is None
    with pytest.raises(TypeError, match="list of parameter names"):
        ViewOptions(query_params="page")
    with pytest.raises(TypeError, match="strings"):
        ViewOptions(query_params=["page", 1])  # type: ignore[list-item]


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        built = Cache(namespace="qp")
    else:
        built = Cache.from_url(
            request.getfixturevalue("redis_url"), namespace="qp", secret_key=SECRET
        )
    yield built
    built.close()


def get(query: str, method: str = "GET") -> Request:
    return Request(method, "http", "shop.example", "/search", query, [])


SEARCH = ViewOptions(ttl=60, query_params=("q", "page"))


def through_adapter(pages: HttpCache, request: Request, body: bytes) -> tuple[str, bytes]:
    """What the adapters do: look up before routing (no view known), bind the view once
    routed, and store what it rendered unless the bind answered."""
    lookup = pages.lookup(request)
    if lookup.response is not None:
        return lookup.state, lookup.response.body
    lookup = pages.bind_view(lookup, SEARCH)
    if lookup.response is not None:
        return lookup.state, lookup.response.body
    served = pages.store(lookup, Response(200, [("Content-Type", "text/html")], body))
    return lookup.state, served.body


def test_junk_parameters_outside_the_allow_list_share_one_page(cache: Cache) -> None:
    pages = HttpCache(cache)
    first = through_adapter(pages, get("q=shoes&utm_source=a"), b"shoes")
    assert first == (MISS, b"shoes")
    for i in range(50):
        junk = through_adapter(pages, get(f"utm_x={i}&q=shoes&r={os.urandom(4).hex()}"), b"no")
        assert junk == (HIT, b"shoes")
    assert through_adapter(pages, get("q=shoes"), b"no") == (HIT, b"shoes")
    assert through_adapter(pages, get("q=boots&page=2&x=1"), b"boots2") == (MISS, b"boots2")
    assert through_adapter(pages, get("page=2&q=boots"), b"no") == (HIT, b"boots2")
    assert through_adapter(pages, get("p%61ge=2&q=boots"), b"encoded") == (MISS, b"encoded")
    local = cache.local
    assert local is not None and len(local) == 3  # 53 requests, three pages


def test_a_view_looked_up_with_its_options_uses_the_allow_list(cache: Cache) -> None:
    pages = HttpCache(cache)
    lookup = pages.lookup(get("q=a&junk=1"), SEARCH)
    pages.store(lookup, Response(200, [], b"a"))
    assert pages.lookup(get("junk=2&q=a"), SEARCH).state == HIT
    assert pages.lookup(get("q=a&junk=3")).state == MISS  # the whole query, as before


def test_an_unsafe_request_through_the_view_drops_the_page_of_its_listed_parameters(
    cache: Cache,
) -> None:
    pages = HttpCache(cache)
    through_adapter(pages, get("q=shoes"), b"old")
    pages.invalidate_url(get("q=shoes&utm=mail", "POST"))  # no view: the exact URL only
    assert through_adapter(pages, get("q=shoes"), b"x") == (HIT, b"old")
    pages.invalidate_url(get("q=shoes&utm=mail", "POST"), SEARCH)
    assert through_adapter(pages, get("q=shoes"), b"new") == (MISS, b"new")
