"""Drive one contender's app in-process, without a server: CPU time per request of the app
alone (framework, adapter, cache), optionally under cProfile.

``python -m apps.inproc fastapi|django N [--cprofile TOP]`` from ``bench/``, with
``BENCH_CONTENDER`` / ``BENCH_REDIS_URL`` set as for the servers (``profile_http.py --inproc``
runs it). FastAPI: the ASGI app called with a scope uvicorn would build (lifespan entered,
on uvloop when installed).
Django: ``WSGIHandler`` called with the environ gunicorn would build. Every pid of
``KEYS`` is requested once first (fills the cache), then ``N`` requests for random pids are
timed with ``time.process_time`` (this process's CPU: a Redis round trip's wait is not
counted, its client-side work and system calls are). Requests run one after another, so
nothing is batched as under a server's concurrent load. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from typing import Any

KEYS = 1000
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]


def fastapi_driver() -> tuple[Callable[[list[int]], int], Callable[[], None]]:
    from .fastapi_app import app

    try:  # the loop uvicorn runs on, when installed
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def many(pids: list[int]) -> int:
        for pid in pids:
            path = f"/p/{pid}"
            scope = {
                "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                "raw_path": path.encode(), "query_string": b"", "root_path": "",
                "headers": list(HEADERS), "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000), "state": {},
            }  # fmt: skip
            await app(scope, receive, send)
        bad = sum(1 for s in statuses if s != 200)
        statuses.clear()
        return bad

    def close() -> None:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()

    return (lambda pids: loop.run_until_complete(many(pids))), close


def django_driver() -> tuple[Callable[[list[int]], int], Callable[[], None]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.django_app.settings")
    from django.core.wsgi import get_wsgi_application

    handler = get_wsgi_application()
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    def many(pids: list[int]) -> int:
        bad = 0
        for pid in pids:
            environ = {
                "REQUEST_METHOD": "GET", "PATH_INFO": f"/p/{pid}", "QUERY_STRING": "",
                "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
                "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
                "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
                "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
                "wsgi.multiprocess": False, "wsgi.run_once": False,
            }  # fmt: skip
            result = handler(environ, start_response)
            b"".join(result)
            close = getattr(result, "close", None)
            if close is not None:
                close()
            bad += not status.pop().startswith("200")
        return bad

    return many, lambda: None


def main() -> int:
    framework, n = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[sys.argv.index("--cprofile") + 1]) if "--cprofile" in sys.argv else 0
    many, close = fastapi_driver() if framework == "fastapi" else django_driver()
    try:
        bad = many(list(range(KEYS)))  # fill
        rng = random.Random(7)
        pids = [rng.randrange(KEYS) for _ in range(n)]
        many(pids[: n // 10])  # warm
        profiler = cProfile.Profile() if top else None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        bad += many(pids)
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        close()
    print(json.dumps({"cpu_us_per_req": cpu * 1e6 / n, "wall_us_per_req": wall * 1e6 / n,
                      "non_200": bad}))  # fmt: skip
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
        print(out.getvalue(), file=sys.stderr)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        print(out.getvalue(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
