"""Real servers for the burst tests: ``uvicorn --workers N`` on a free loopback port, and a
burst of concurrent requests against them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def uvicorn_workers(
    app: str, env: Mapping[str, str], log: Path, *, workers: int = 4
) -> Iterator[str]:
    """Run ``app`` (``module:attribute``) under uvicorn with ``workers`` processes; yields its
    base URL once every worker answered ``/health`` (each sends its pid in ``X-Pid``)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            pids: set[str] = set()
            started = time.monotonic()
            with httpx.Client(timeout=2) as client:
                # Every worker seen (or, once one answers, 20 s: the kernel may favour some).
                while len(pids) < workers and not (pids and time.monotonic() > started + 20):
                    if process.poll() is not None or time.monotonic() > started + 60:
                        raise RuntimeError(f"server did not start:\n{log.read_text()}")
                    try:
                        # A new connection each time: the kernel spreads them over the workers.
                        answer = client.get(f"{base}/health", headers={"Connection": "close"})
                        pids.add(answer.headers.get("x-pid", ""))
                        time.sleep(0.02)
                    except httpx.TransportError:
                        time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def fire(client: httpx.AsyncClient, url: str, n: int) -> tuple[list[httpx.Response], float]:
    """``n`` concurrent GETs of ``url``: the responses and the wall time of the burst."""
    began = time.perf_counter()
    responses = await asyncio.gather(*(client.get(url) for _ in range(n)))
    return list(responses), time.perf_counter() - began


def burst(base: str, path: str, n: int = 100) -> tuple[list[httpx.Response], float]:
    """A burst of ``n`` concurrent requests to a real server, each on its own connection."""

    async def run() -> tuple[list[httpx.Response], float]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            return await fire(client, path, n)

    return asyncio.run(run())
