"""``make demo``: migrate and seed both example shops, run them side by side, stop on Ctrl-C.

Django on http://127.0.0.1:$DJANGO_PORT (8000), FastAPI on http://127.0.0.1:$FASTAPI_PORT
(8001). SQLite files live in example_projects/.data/; set REDIS_URL to put both shops'
caches (and sessions) in Redis. SHOP_PRODUCTS sets the catalogue size (3000).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DJANGO_DIR = HERE / "django_shop"
UVICORN = (sys.executable, "-m", "uvicorn", "fastapi_shop.main:app")


def run(*args: str, cwd: Path) -> None:
    print("$", " ".join(args[1:]) if args[0] == sys.executable else " ".join(args), flush=True)
    subprocess.run(args, cwd=cwd, check=True)


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def main() -> int:
    # Ctrl-C reaches the whole process group; this also works when started with SIGINT ignored
    # (a background job of a non-interactive shell), and `kill` (SIGTERM) stops both too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if importlib.util.find_spec("uvicorn") is None:
        print("uvicorn is missing: pip install uvicorn (the FastAPI shop needs a server)")
        return 1
    django_port = os.environ.get("DJANGO_PORT", "8000")
    fastapi_port = os.environ.get("FASTAPI_PORT", "8001")
    products = os.environ.get("SHOP_PRODUCTS", "3000")
    os.environ.pop("SHOP_DB", None)  # each shop keeps its own file in .data/
    (HERE / ".data").mkdir(exist_ok=True)
    manage = (sys.executable, "manage.py")
    run(*manage, "migrate", "--noinput", "-v", "0", cwd=DJANGO_DIR)
    run(*manage, "seed_shop", "--count", products, cwd=DJANGO_DIR)
    servers = {
        "Django": subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{django_port}"], cwd=DJANGO_DIR
        ),
        "FastAPI": subprocess.Popen(
            [*UVICORN, "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", fastapi_port],
            cwd=HERE,
        ),
    }
    urls = {
        "Django": f"http://127.0.0.1:{django_port}/",
        "FastAPI": f"http://127.0.0.1:{fastapi_port}/",
    }
    try:
        for name, url in urls.items():
            if not wait_until_up(url, servers[name]):
                print(f"{name} did not start: see its output above")
                return 1
        cache = (
            f"Redis at {os.environ['REDIS_URL']}" if os.environ.get("REDIS_URL") else "in-process"
        )
        print(f"\ncachekit example shops ({cache} cache, SQLite in {HERE / '.data'}):")
        for name, url in urls.items():
            print(f"  {name:8} {url}    live cache stats: {url}cachekit/")
        print("Press Ctrl-C to stop both.\n", flush=True)
        while all(p.poll() is None for p in servers.values()):
            time.sleep(0.5)
        print("a server exited; stopping the other")
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        for process in servers.values():
            if process.poll() is None:
                process.terminate()  # SIGTERM: both servers shut down cleanly
        for process in servers.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
