"""Where an HTTP contender's server spends its CPU under load:
``.venv/bin/python bench/profile_http.py fastapi.cachekit_redis [django.plain ...]``.

Companion of ``bench/run.py`` (same venv, its own private redis-server, the apps and server
command lines of ``bench/bench_http.py``). For each contender named (``framework.name``, as in
``http.json``) it starts the server, fills the cache, then drives it with ``wrk`` while
``py-spy record`` samples the server process (gunicorn: its worker too) for ``--seconds``.
Only threads holding the GIL are sampled (``--gil``): with gunicorn's threads, that is the
Python work itself, not a thread waiting in ``select`` or on a lock.

It prints, per contender:

* by package (cachekit_core, cachekit_fastapi, starlette, redis, uvicorn, ...): the share of
  samples whose innermost frame is in that package (self) — where the CPU actually is;
* the functions with the largest inclusive share (on the stack) and self share;
* the requests/s reached while profiled (lower than unprofiled: py-spy costs a little).

The raw collapsed stacks go to ``bench/results/profile/<contender>.txt`` (feed them to any
flame-graph tool), the summary to ``<contender>.md`` beside them.

``--inproc`` drives the apps without a server instead (``bench/apps/inproc.py``): requests
one after another straight into the ASGI app / Django's WSGI handler, and the app's own CPU
time per request (``time.process_time``), so server overhead and batching are out of the
picture; ``--cprofile`` adds cProfile's top functions (``<contender>.cprofile.txt``).

Options: ``--seconds N`` (10), ``--rate HZ`` (250), ``--top N`` (25), ``--inproc``,
``--requests N`` (20000), ``--cprofile``, ``--no-venv``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "results" / "profile"

# innermost-frame file path -> package label (first match wins)
PACKAGES = [
    ("cachekit_core", "cachekit_core"),
    ("cachekit_fastapi", "cachekit_fastapi"),
    ("cachekit_django", "cachekit_django"),
    ("/fastapi_cache/", "fastapi-cache2"),
    ("/cashews/", "cashews"),
    ("/django_redis/", "django-redis"),
    ("/fastapi/", "fastapi"),
    ("/starlette/", "starlette"),
    ("/pydantic", "pydantic"),
    ("/uvicorn/", "uvicorn"),
    ("/gunicorn/", "gunicorn"),
    ("/django/", "django"),
    ("/redis/", "redis-py"),
    ("/hiredis", "hiredis"),
    ("/msgpack", "msgpack"),
    ("/orjson", "orjson"),
    ("/asyncio/", "asyncio (stdlib)"),
    ("/uvloop/", "uvloop"),
    ("/apps/", "bench app (the view's work)"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def package_of(file: str) -> str:
    for needle, label in PACKAGES:
        if needle in file:
            return label
    if "/lib/python3" in file and "site-packages" not in file:
        return "stdlib"
    return "other"


def parse(raw: str) -> tuple[list[tuple[list[tuple[str, str]], int]], int]:
    """py-spy's raw (collapsed) output -> [(frames outermost first as (func, file)), count]."""
    stacks = []
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            m = _FRAME.match(part)
            if m:
                frames.append((m.group("func"), m.group("file")))
            else:  # "process ..." / "thread ..." headers
                continue
        if frames:
            stacks.append((frames, int(count)))
            total += int(count)
    return stacks, total


def summarize(raw: str, top: int, us_per_sample: float) -> str:
    """Tables of shares; ``us_per_sample``: GIL-holding microseconds per request one sample stands
    for (sampling period / requests served), so shares also read as microseconds/request."""
    stacks, total = parse(raw)
    if not total:
        return "no samples (was the server busy?)\n"
    us = us_per_sample
    self_pkg: collections.Counter[str] = collections.Counter()
    incl_pkg: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    incl_fn: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        func, file = frames[-1]
        self_pkg[package_of(file)] += count
        self_fn[f"{func} ({_short(file)})"] += count
        for name in {f"{fn} ({_short(fl)})" for fn, fl in frames}:
            incl_fn[name] += count
        for pkg in {package_of(fl) for _, fl in frames}:
            incl_pkg[pkg] += count
    lines = [
        f"{total} samples holding the GIL = {total * us:.1f} us of Python per request. Self: "
        "the innermost frame is in the package (where the CPU is); on stack: the package is "
        "anywhere in the stack (its calls included; async stacks start at the running task's "
        "coroutine). us/req: the share times the GIL time per request.",
        "",
        "| package | self | self us/req | on stack | on stack us/req |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {pkg} | {100 * n / total:.1f}% | {n * us:.1f} | "
        f"{100 * incl_pkg[pkg] / total:.1f}% | {incl_pkg[pkg] * us:.1f} |"
        for pkg, n in self_pkg.most_common()
    ]
    lines += ["", "| function (inclusive) | share | us/req |", "|---|--:|--:|"]
    lines += [
        f"| `{fn}` | {100 * n / total:.1f}% | {n * us:.1f} |" for fn, n in incl_fn.most_common(top)
    ]
    lines += ["", "| function (self) | share | us/req |", "|---|--:|--:|"]
    lines += [
        f"| `{fn}` | {100 * n / total:.1f}% | {n * us:.1f} |" for fn, n in self_fn.most_common(top)
    ]
    return "\n".join(lines) + "\n"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def profile(bench: object, key: str, seconds: int, rate: int, top: int) -> str:
    import bench_http

    assert isinstance(bench, bench_http.HttpBench)
    contender = bench.by_key[key]
    bench.redis.flushall()
    with bench.serving([contender]) as ports:
        port = ports[key]
        bench._check_first_requests(contender, port)
        bench._fill(port)
        bench_http.run_wrk(port, 1, bench.threads, bench.connections, bench.script)
        pid = bench.servers[key].pid  # gunicorn's master: --subprocesses adds its worker
        OUT.mkdir(parents=True, exist_ok=True)
        raw_path = OUT / f"{key}.txt"
        wrk_result: dict[str, object] = {}

        def load() -> None:
            wrk_result.update(
                bench_http.run_wrk(
                    port, seconds + 2, bench.threads, bench.connections, bench.script
                )
            )

        loader = threading.Thread(target=load)
        loader.start()
        spy = subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
             "--subprocesses", "--duration", str(seconds), "--rate", str(rate),
             "--format", "raw", "--output", str(raw_path), "--nonblocking",
             "--full-filenames", "--gil"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        loader.join()
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {spy.stderr.strip()}")
    rps = float(wrk_result.get("rps", 0.0)) or 1.0  # type: ignore[arg-type]
    # the samples cover `seconds` of a steady wrk run: rps * seconds requests
    summary = summarize(raw_path.read_text(), top, 1e6 / rate / (rps * seconds))
    header = (
        f"# {key}: {contender.label}\n\n"
        f"{wrk_result.get('rps', 0):,.0f} req/s while profiled (py-spy at {rate} Hz, "
        f"{seconds} s, wrk -t{bench.threads} -c{bench.connections})\n\n"
    )
    (OUT / f"{key}.md").write_text(header + summary)
    return header + summary


def inproc(url: str, keys: list[str], n: int, top: int) -> None:
    """``apps/inproc.py`` for each contender: the app's own CPU per request, no server."""
    rows = []
    for key in keys:
        framework, name = key.split(".", 1)
        env = dict(os.environ, BENCH_CONTENDER=name, BENCH_REDIS_URL=url)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(BENCH), env.get("PYTHONPATH"))))
        args = [sys.executable, "-m", "apps.inproc", framework, str(n)]
        if top:
            args += ["--cprofile", str(top)]
        done = subprocess.run(args, cwd=BENCH, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{key}: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((key, result))
        if top:
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / f"{key}.cprofile.txt").write_text(done.stderr)
            print(f"# {key}: cProfile\n{done.stderr}")
    print("| contender | app CPU/request | wall/request | non-200 |")
    print("|---|--:|--:|--:|")
    for key, r in rows:
        print(f"| `{key}` | {r['cpu_us_per_req']:.1f} us | {r['wall_us_per_req']:.1f} us | "
              f"{r['non_200']} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("contenders", nargs="+", help="e.g. fastapi.cachekit_redis")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--inproc", action="store_true", help="no server: the app's own CPU per request"
    )
    parser.add_argument("--requests", type=int, default=20_000, help="--inproc: timed requests")
    parser.add_argument("--cprofile", action="store_true", help="--inproc: under cProfile")
    parser.add_argument("--no-venv", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH))
    import run

    if not args.no_venv and not run._in_bench_venv():
        run.ensure_venv()
        os.execv(str(run.VENV_PY), [str(run.VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])
    if not args.inproc and not run.ensure_wrk():
        print("error: wrk is missing (apt-get install wrk)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import bench_http

    from tests.support.redis_server import RedisServer

    unknown = [k for k in args.contenders if k not in {c.key for c in bench_http.CONTENDERS}]
    if unknown:
        keys = ", ".join(c.key for c in bench_http.CONTENDERS)
        print(f"error: unknown contender(s) {unknown}; one of: {keys}", file=sys.stderr)
        return 2
    if args.inproc:
        with RedisServer() as server:
            inproc(server.url, args.contenders, args.requests, args.top if args.cprofile else 0)
        return 0
    frameworks = tuple({k.split(".", 1)[0] for k in args.contenders})
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        bench = bench_http.HttpBench(
            server.url, rounds=1, slices=1, slice_seconds=1, warmup=1, threads=2,
            connections=32, frameworks=frameworks, log_dir=Path(tmp),
        )  # fmt: skip
        try:
            for key in args.contenders:
                print(profile(bench, key, args.seconds, args.rate, args.top), flush=True)
        finally:
            bench.close()
    print(f"raw stacks and summaries in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
