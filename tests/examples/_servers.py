"""Run the example shops as real servers in subprocesses (each with its own settings, so
pytest's ``DJANGO_SETTINGS_MODULE`` never applies to them) on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_projects"
DJANGO_DIR = EXAMPLES / "django_shop"
PRODUCTS = 200  # a small catalogue: seeding stays well under a second


def shop_env(
    tmp_path: Path, redis_url: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment; ``extra`` adds knobs such as ``SHOP_L1_TTL``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(SHOP_DB=str(tmp_path / "shop.sqlite3"), SHOP_PRODUCTS=str(PRODUCTS))
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


@contextmanager
def _serve(
    command: Callable[[int], list[str]], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(port),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log.read_text()}")
                try:
                    httpx.get(f"{base}/cachekit/stats.json", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def django_shop(
    tmp_path: Path, redis_url: str | None = None, *, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Migrate, seed and ``runserver`` the Django shop; yields its base URL. The server's
    output goes to ``tmp_path / "django.log"``."""
    env = shop_env(tmp_path, redis_url, extra_env)
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_shop", "--count", str(PRODUCTS)]):
        subprocess.run([*manage, *command], cwd=DJANGO_DIR, env=env, check=True, timeout=60)

    def server(port: int) -> list[str]:
        return [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"]

    with _serve(server, DJANGO_DIR, env, tmp_path / "django.log") as base:
        yield base


@contextmanager
def fastapi_shop(
    tmp_path: Path, redis_url: str | None = None, *, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run the FastAPI shop under uvicorn (it creates and seeds its tables at start-up); its
    output goes to ``tmp_path / "fastapi.log"``."""
    env = shop_env(tmp_path, redis_url, extra_env)

    def server(port: int) -> list[str]:
        uvicorn = [sys.executable, "-m", "uvicorn", "fastapi_shop.main:app"]
        return [*uvicorn, "--app-dir", str(EXAMPLES), "--host", "127.0.0.1", "--port", str(port)]

    with _serve(server, EXAMPLES, env, tmp_path / "fastapi.log") as base:
        yield base
