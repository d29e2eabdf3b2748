"""A write-behind worker run as a child process by tests/core/test_writes.py (which SIGKILLs it
mid-flush). Usage: python -m tests.core._writer_worker REDIS_URL NAMESPACE SQLITE_PATH

Its flush upserts each batch into SQLite (idempotent: keyed by the item key) in two commits
with a pause in between, so a kill usually lands inside a batch that is half written and
not yet acknowledged: exactly the case at-least-once delivery must repair.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from typing import Any

from cachekit_core import Cache

PAUSE = 0.03  # per half batch: slow enough for the test to kill mid-flush


def main(url: str, namespace: str, db_path: str) -> None:
    stop = threading.Event()
    # SIGTERM is the polite stop (the last worker); SIGKILL is the crash being tested.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    db = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")

    def upsert(items: list[tuple[str, Any]]) -> None:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO store (key, value, deliveries) VALUES (?, ?, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "deliveries = deliveries + 1",
            [(key, value["n"]) for key, value in items],
        )
        db.execute("UPDATE commits SET n = n + 1")
        db.execute("COMMIT")

    def flush(items: list[tuple[str, Any]]) -> None:
        half = len(items) // 2
        upsert(items[:half])
        time.sleep(PAUSE)
        upsert(items[half:])
        time.sleep(PAUSE)

    cache = Cache.from_url(url, namespace=namespace, secret_key="test-secret")
    wb = cache.write_behind("views", flush=flush, batch_size=100, interval=0.2, min_idle=0.3)
    wb.run_worker(stop)
    cache.close()
    db.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
