"""Functions run in child processes (spawn context) by the multi-process tests."""

from __future__ import annotations

import time
from multiprocessing.synchronize import Barrier
from typing import Any

from cachekit_core import Cache


def stampede_worker(url: str, namespace: str, barrier: Barrier, calls: Any, results: Any) -> None:
    cache = Cache.from_url(url, namespace=namespace, secret_key="test-secret")

    def loader() -> str:
        with calls.get_lock():
            calls.value += 1
        time.sleep(0.3)  # slow enough that every process arrives while it runs
        return "loaded"

    barrier.wait()
    results.put(cache.get_or_set("cold", loader, ttl=60))
    cache.close()


def l1_watcher(url: str, namespace: str, ready: Any, go: Any, results: Any) -> None:
    """Fill L1 with a tagged entry, then report how long until it stops being served."""
    cache = Cache.from_url(url, namespace=namespace, secret_key="test-secret")
    assert cache.get("page") == "v1"  # starts the invalidation listener
    deadline = time.monotonic() + 5
    while not cache.stats()["layers"]["redis"]["listening"] and time.monotonic() < deadline:
        time.sleep(0.005)
    # Subscribing clears L1 (invalidations may have been missed before): fill it again.
    assert cache.get("page") == "v1"
    local = cache.local
    assert local is not None and local.get("page") is not None
    ready.set()
    go.wait(10)
    started = time.monotonic()
    while time.monotonic() - started < 2:
        entry = local.get("page")
        if entry is None or not cache.tags_current(entry):
            results.put(time.monotonic() - started)
            break
        time.sleep(0.001)
    else:
        results.put(None)
    cache.close()
