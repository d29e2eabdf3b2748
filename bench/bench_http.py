"""cachekit's HTTP adapters measured through real servers with ``wrk`` on loopback.

Every contender is one small app (``bench/apps/``) served by its own server process on a free
127.0.0.1 port: FastAPI under uvicorn (1 worker, no access log, httptools + uvloop when
installed), Django under gunicorn (1 worker, ``gthread`` with 4 threads; see
``DJANGO_THREADS``). Every request is ``GET /p/<pid>`` for a random pid out of 1,000 pages,
all of them cached before the measured slices.

One round, per framework:

1. start one server per contender (fresh processes every round, Redis flushed first);
2. for each: two requests to ``/p/42`` (the second must be a hit where the contender says so:
   ``X-Cache: HIT`` for cachekit, ``X-FastAPI-Cache: HIT`` for fastapi-cache2; every
   contender's body must be the same JSON), one request per page (fills the cache), then
   ``wrk`` for the warm-up;
3. the contenders take turns: slice after slice, each runs ``wrk`` for ``slice_seconds``
   (the order alternating), so **one server is under load at a time** while the others sit
   idle. Around each slice the harness reads ``GET /calls`` (how often the view's work ran:
   ~0 for a cache) and Redis's ``total_commands_processed`` (commands per request).

This machine's speed drifts by up to 2x within seconds (two vCPUs shared with wrk and Redis),
so a ratio is the median of the ratios of slices that ran back to back (one to two seconds
apart), never of figures minutes apart. A contender's req/s is the median over rounds of its
round's total requests / total time.

Run through ``bench/run.py`` (it owns the venv, wrk and the private redis-server).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _table import aligned

BENCH = Path(__file__).resolve().parent
PATH = "/p/42"  # the page whose body every contender must return identically
HOST = "127.0.0.1"
# wrk asks for /p/<random pid in 0..KEYS-1>: a catalogue of pages, as a site serves, rather than
# one hot URL. With one URL every in-flight request wants the same key and a library that
# coalesces concurrent identical calls (cashews' @cache does, by default) would answer 32
# requests with one Redis read; over 1,000 keys, collisions among 32 in-flight requests are
# rare and every contender's hits go to its store. All keys are filled before the runs.
KEYS = 1000
WRK_SCRIPT = """\
-- /p/<random pid>: every page is cached before the run (see bench_http.py)
local keys = {keys}
function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end
function init(args)
  math.randomseed(seed)
end
function request()
  return wrk.format("GET", "/p/" .. math.random(0, keys - 1))
end
"""


# -- contenders --------------------------------------------------------------------------------
@dataclass
class Contender:
    framework: str  # "fastapi" | "django"
    name: str  # BENCH_CONTENDER value
    label: str
    redis: bool = False
    cached: bool = True
    hit_header: tuple[str, str] | None = None  # (lower-case name, value) on a hit
    body_bytes: int | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)  # one per round

    @property
    def key(self) -> str:
        return f"{self.framework}.{self.name}"

    @property
    def rps(self) -> list[float]:
        return [s["rps"] for s in self.samples]


CONTENDERS: list[Contender] = [
    Contender("fastapi", "plain", "plain endpoint (no cache)", cached=False),
    Contender("fastapi", "cachekit_l1", "cachekit @kit.cache, Cache() (L1)",
              hit_header=("x-cache", "HIT")),
    Contender("fastapi", "cachekit_redis", "cachekit @kit.cache, Redis only (l1=False)",
              redis=True, hit_header=("x-cache", "HIT")),
    Contender("fastapi", "fc2_mem", "fastapi-cache2 @cache, InMemoryBackend",
              hit_header=("x-fastapi-cache", "HIT")),
    Contender("fastapi", "fc2_redis", "fastapi-cache2 @cache, RedisBackend", redis=True,
              hit_header=("x-fastapi-cache", "HIT")),
    Contender("fastapi", "cashews_redis", "cashews @cache, redis://", redis=True),
    Contender("django", "plain", "plain view (no cache)", cached=False),
    Contender("django", "cachekit_l1", "cachekit cache_view, memory layer (L1)",
              hit_header=("x-cache", "HIT")),
    Contender("django", "cachekit_redis", "cachekit cache_view, Redis layer only",
              redis=True, hit_header=("x-cache", "HIT")),
    Contender("django", "cache_page_locmem", "Django cache_page, LocMemCache"),
    Contender("django", "cache_page_redis", "Django cache_page, django-redis", redis=True),
]  # fmt: skip


@dataclass
class Row:
    """One line of the report: ``subject``'s ratio to ``peer`` (req/s over req/s)."""

    case: str
    subject: str  # contender key
    peer: str  # contender key
    target: str
    check: Callable[[float], bool] | None  # ratio -> ok; None: info
    note: str = ""


ROWS: list[Row] = [
    Row("FastAPI, L1 hit", "fastapi.cachekit_l1", "fastapi.plain", ">= 1.00x plain",
        lambda r: r >= 1.00),
    Row("FastAPI, L1 hit (peer)", "fastapi.fc2_mem", "fastapi.plain", "info", None,
        "team measured 0.87x"),
    Row("FastAPI, L1 hit", "fastapi.cachekit_l1", "fastapi.fc2_mem", "info", None,
        "cachekit vs fastapi-cache2"),
    Row("FastAPI, Redis hit", "fastapi.cachekit_redis", "fastapi.plain", ">= 0.90x plain",
        lambda r: r >= 0.90),
    Row("FastAPI, Redis hit (peer)", "fastapi.cashews_redis", "fastapi.plain", "info", None,
        "team measured 0.83x"),
    Row("FastAPI, Redis hit (peer)", "fastapi.fc2_redis", "fastapi.plain", "info", None,
        "team measured 0.38x"),
    Row("FastAPI, Redis hit", "fastapi.cachekit_redis", "fastapi.cashews_redis", "info", None,
        "cachekit vs cashews"),
    Row("Django, L1 hit", "django.cachekit_l1", "django.plain", ">= 1.00x plain",
        lambda r: r >= 1.00),
    Row("Django, L1 hit (peer)", "django.cache_page_locmem", "django.plain", "info", None,
        "team measured 0.79x"),
    Row("Django, L1 hit", "django.cachekit_l1", "django.cache_page_locmem", "info", None,
        "cachekit vs cache_page"),
    Row("Django, Redis hit", "django.cachekit_redis", "django.plain", ">= 0.90x plain",
        lambda r: r >= 0.90),
    Row("Django, Redis hit (peer)", "django.cache_page_redis", "django.plain", "info", None,
        "team measured 0.49x"),
    Row("Django, Redis hit", "django.cachekit_redis", "django.cache_page_redis", "info", None,
        "cachekit vs cache_page"),
]  # fmt: skip


# -- servers -----------------------------------------------------------------------------------
def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def uvicorn_args(app: str, port: int) -> list[str]:
    args = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    if _installed("uvloop"):
        args += ["--loop", "uvloop"]
    if _installed("httptools"):
        args += ["--http", "httptools"]
    return args


# Django's contenders all run under the same server: gunicorn, one worker process, the gthread
# worker class with 4 threads (``--django-threads``). Why:
# - gunicorn (WSGI) is how most Django sites are served, and the whole request (middleware,
#   view, cache) then runs synchronously in one thread for every contender alike. Under uvicorn
#   (ASGI) Django hands every sync view to a thread through asgiref (~3x less throughput
#   here), a cost that falls on the plain view and on cache_page (which wraps the view) but
#   not on a hit of cachekit's async-capable middleware: the comparison would then partly
#   measure asgiref. ``--django-server uvicorn`` runs it anyway, for information.
# - gthread keeps connections alive as wrk expects (the sync class closes each one, and
#   connection setup would dominate); 4 threads let Redis round trips overlap, as a
#   production gthread worker does (with 1 thread every Redis wait stalls the worker: both
#   Redis contenders lose ~0.1x more, the in-memory ones change within the noise).
DJANGO_THREADS = 4


def gunicorn_args(app: str, port: int, threads: int = DJANGO_THREADS) -> list[str]:
    return [sys.executable, "-m", "gunicorn", app, "--bind", f"{HOST}:{port}", "--workers", "1",
            "--worker-class", "gthread", "--threads", str(threads),
            "--log-level", "warning", "--keep-alive", "30"]  # fmt: skip


def django_server_args(server: str, port: int, threads: int = DJANGO_THREADS) -> list[str]:
    if server == "gunicorn":
        return gunicorn_args("apps.django_app.wsgi:application", port, threads)
    if server == "uvicorn":
        return uvicorn_args("apps.django_app.asgi:application", port)
    raise ValueError(f"unknown Django server {server!r}")


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"{HOST}:{port}"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


class Server:
    """One contender's server process (its own session, so a stop reaches its workers)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=BENCH, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self, port: int, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start: {' '.join(self.args)}; "
                                   f"see {self.log_path}")  # fmt: skip
            try:
                status, _, _ = http_get(port, "/calls", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer within {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not running"
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its live children (gunicorn's worker)."""
        pids = [self.pid]
        with suppress(OSError):
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
            pids += [int(p) for p in children.split()]
        ticks = 0
        for pid in pids:
            with suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / _CLK_TCK

    def terminate(self) -> None:
        """SIGTERM to the server's own process group (gunicorn: its master and worker)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()


# -- wrk ---------------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    result["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if m:
        result["requests"] = int(m.group(1))
        result["seconds"] = _ms(m.group(2) + m.group(3)) / 1e3
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            result[f"p{pct}_ms"] = round(_ms(m.group(1)), 3)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    return result


def run_wrk(
    port: int, seconds: float, threads: int, connections: int, script: Path | None = None
) -> dict[str, Any]:
    duration = max(1, round(seconds))  # wrk takes whole seconds
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
            f"http://{HOST}:{port}{PATH}"]  # fmt: skip
    if script is not None:
        args[1:1] = ["-s", str(script)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


# -- the benchmark -----------------------------------------------------------------------------
class HttpBench:
    """Rounds of interleaved slices; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        rounds: int,
        slices: int,
        slice_seconds: int,
        warmup: int,
        threads: int,
        connections: int,
        django_server: str = "gunicorn",
        django_threads: int = DJANGO_THREADS,
        frameworks: tuple[str, ...] = ("fastapi", "django"),
        keys: int = KEYS,
        log_dir: Path,
    ) -> None:
        self.url = redis_url
        self.rounds = rounds
        self.slices = slices
        self.slice_seconds = slice_seconds
        self.warmup = warmup
        self.threads = threads
        self.connections = connections
        self.django_server = django_server
        self.django_threads = django_threads
        self.contenders = [c for c in CONTENDERS if c.framework in frameworks]
        self.by_key = {c.key: c for c in self.contenders}
        self.log_dir = log_dir
        self.keys = keys
        self.script = log_dir / "keys.lua"
        self.script.write_text(WRK_SCRIPT.replace("{keys}", str(keys)))
        self.expected_body: Any = None
        self.problems: list[str] = []
        # (subject key, peer key) -> ratios of slices that ran back to back
        self.slice_ratios: dict[tuple[str, str], list[float]] = {}
        self.servers: dict[str, Server] = {}  # the running ones, by contender key
        import redis

        self.redis = redis.Redis.from_url(redis_url)

    def server_args(self, c: Contender, port: int) -> list[str]:
        if c.framework == "fastapi":
            return uvicorn_args("apps.fastapi_app:app", port)
        return django_server_args(self.django_server, port, self.django_threads)

    def env(self, c: Contender) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BENCH_CONTENDER=c.name,
            BENCH_REDIS_URL=self.url,
            DJANGO_SETTINGS_MODULE="apps.django_app.settings",
            PYTHONPATH=os.pathsep.join(p for p in (str(BENCH), env.get("PYTHONPATH")) if p),
        )
        return env

    def _redis_commands(self) -> int:
        return int(self.redis.info("stats")["total_commands_processed"])

    @contextmanager
    def serving(self, group: list[Contender]) -> Iterator[dict[str, int]]:
        """Start the servers of ``group`` (each on its own port); stop them all on exit."""
        servers: list[Server] = []
        ports: dict[str, int] = {}
        try:
            # Started together (imports overlap on the two cores), then waited for in turn.
            for c in group:
                port = ports[c.key] = free_port()
                server = Server(
                    self.server_args(c, port), self.env(c), self.log_dir / f"{c.key}.log"
                )
                servers.append(server)
                server.launch()
                self.servers[c.key] = server
            for c, server in zip(group, servers, strict=True):
                server.wait_ready(ports[c.key])
            yield ports
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait()
            for c in group:
                self.servers.pop(c.key, None)

    def _check_first_requests(self, c: Contender, port: int) -> int:
        status1, _, body1 = http_get(port, PATH)  # fills the cache
        status2, headers2, body2 = http_get(port, PATH)
        if status1 != 200 or status2 != 200:
            raise RuntimeError(f"{c.key}: GET {PATH} answered {status1}, {status2}")
        data = json.loads(body2)
        if json.loads(body1) != data:
            raise RuntimeError(f"{c.key}: the cached body differs from the rendered one")
        if self.expected_body is None:
            self.expected_body = data
        elif data != self.expected_body:
            raise RuntimeError(f"{c.key}: body differs from the other contenders'")
        if c.hit_header is not None:
            name, value = c.hit_header
            if headers2.get(name, "").upper() != value:
                raise RuntimeError(
                    f"{c.key}: second request was not a hit ({name}: {headers2.get(name)!r})"
                )
        return len(body2)

    def _fill(self, port: int) -> None:
        """Request every page once, on one keep-alive connection (fills the caches)."""
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            for pid in range(self.keys):
                conn.request("GET", f"/p/{pid}", headers={"Host": f"{HOST}:{port}"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET /p/{pid} answered {resp.status}")
        finally:
            conn.close()

    def _calls(self, port: int) -> int:
        _, _, body = http_get(port, "/calls")
        return int(json.loads(body)["calls"])

    def _slice(self, c: Contender, port: int, round_no: int, slice_no: int) -> dict[str, Any]:
        server = self.servers[c.key]
        calls0, cmds0 = self._calls(port), self._redis_commands()
        cpu0 = server.cpu_seconds()
        sample = run_wrk(port, self.slice_seconds, self.threads, self.connections, self.script)
        cpu1 = server.cpu_seconds()
        cmds1, calls1 = self._redis_commands(), self._calls(port)
        requests = sample.get("requests") or 1
        sample.update(
            round=round_no,
            slice=slice_no,
            view_calls=calls1 - calls0,
            # the server's CPU (user + system, clock ticks of 10 ms) per request of the slice
            cpu_us_per_req=round((cpu1 - cpu0) * 1e6 / requests, 1),
            # less the INFO call itself, per request of the slice
            redis_cmds_per_req=round(max(cmds1 - cmds0 - 1, 0) / requests, 3),
        )
        if sample["non_2xx"] or sample["socket_errors"]:
            self.problems.append(
                f"{c.key} round {round_no + 1} slice {slice_no + 1}: {sample['non_2xx']} "
                f"non-2xx, {sample['socket_errors']} socket errors"
            )
        if c.cached and sample["view_calls"] > max(3, requests // 1000):
            self.problems.append(
                f"{c.key} round {round_no + 1} slice {slice_no + 1}: the view ran "
                f"{sample['view_calls']} times for {requests} requests (cache misses)"
            )
        return sample

    def run_group(
        self, group: list[Contender], round_no: int, progress: Callable[[str], None]
    ) -> None:
        # Every round starts from an empty Redis: entries filled a round earlier could expire
        # (ttl=60) in the middle of this one.
        self.redis.flushall()
        with self.serving(group) as ports:
            for c in group:
                body_bytes = self._check_first_requests(c, ports[c.key])
                self._fill(ports[c.key])
                if self.warmup > 0:
                    run_wrk(ports[c.key], self.warmup, self.threads, self.connections, self.script)
                c.body_bytes = body_bytes
            per_slice: dict[str, list[dict[str, Any]]] = {c.key: [] for c in group}
            for j in range(self.slices):
                order = group if (round_no + j) % 2 == 0 else group[::-1]
                for c in order:
                    per_slice[c.key].append(self._slice(c, ports[c.key], round_no, j))
        for c in group:
            slices = per_slice[c.key]
            requests = sum(s.get("requests", 0) for s in slices)
            seconds = sum(s.get("seconds", 0.0) for s in slices) or 1.0
            c.samples.append({
                "round": round_no,
                "rps": round(requests / seconds, 1),
                "requests": requests,
                "p50_ms": _median_of(slices, "p50_ms"),
                "p99_ms": _median_of(slices, "p99_ms"),
                "view_calls": sum(s["view_calls"] for s in slices),
                "cpu_us_per_req": _median_of(slices, "cpu_us_per_req"),
                "redis_cmds_per_req": _median_of(slices, "redis_cmds_per_req"),
                "body_bytes": c.body_bytes,
                "slices": slices,
            })  # fmt: skip
        for row in ROWS:
            s, p = self.by_key.get(row.subject), self.by_key.get(row.peer)
            if s in group and p in group:
                pairs = zip(s.samples[-1]["slices"], p.samples[-1]["slices"], strict=True)
                self.slice_ratios.setdefault((s.key, p.key), []).extend(
                    a["rps"] / b["rps"] for a, b in pairs
                )
        plain = group[0].samples[-1]["rps"]
        for c in group:
            sample = c.samples[-1]
            progress(
                f"round {round_no + 1}/{self.rounds} {c.key:26s} {sample['rps']:8.0f} req/s "
                f"({sample['rps'] / plain:4.2f}x plain)  "
                f"cpu {sample['cpu_us_per_req']:5.0f} us/req  p50 {sample['p50_ms'] or 0:6.2f} ms  "
                f"view calls {sample['view_calls']:6d}  redis cmds/req "
                f"{sample['redis_cmds_per_req']}"
            )

    def run(self, progress: Callable[[str], None]) -> None:
        frameworks = list(dict.fromkeys(c.framework for c in self.contenders))
        for r in range(self.rounds):
            for fw in frameworks:
                group = [c for c in self.contenders if c.framework == fw]  # plain first
                self.run_group(group, r, progress)

    # -- results ------------------------------------------------------------------------------
    def results(self) -> dict[str, Any]:
        contenders = {}
        for c in self.contenders:
            if not c.samples:
                continue
            rps = c.rps
            contenders[c.key] = {
                "framework": c.framework,
                "label": c.label,
                "median_rps": round(statistics.median(rps), 1),
                "min_rps": round(min(rps), 1),
                "max_rps": round(max(rps), 1),
                "median_p50_ms": _median_of(c.samples, "p50_ms"),
                "median_p99_ms": _median_of(c.samples, "p99_ms"),
                "view_calls_per_round": [s["view_calls"] for s in c.samples],
                "cpu_us_per_req": _median_of(c.samples, "cpu_us_per_req"),
                "redis_cmds_per_req": _median_of(c.samples, "redis_cmds_per_req"),
                "samples": c.samples,
            }
        rows = []
        for row in ROWS:
            if row.subject not in contenders or row.peer not in contenders:
                continue
            ratios = self.slice_ratios.get((row.subject, row.peer), [])
            ratio = statistics.median(ratios) if ratios else None
            s, p = contenders[row.subject], contenders[row.peer]
            status = "info"
            if row.check is not None and ratio is not None:
                status = "PASS" if row.check(ratio) else "FAIL"
            rows.append({
                "case": row.case,
                "subject": row.subject,
                "subject_label": s["label"],
                "subject_rps": s["median_rps"],
                "peer": row.peer,
                "peer_label": p["label"],
                "peer_rps": p["median_rps"],
                "ratio": None if ratio is None else round(ratio, 3),
                "ratio_min": round(min(ratios), 3) if ratios else None,
                "ratio_max": round(max(ratios), 3) if ratios else None,
                "ratio_of_medians": round(s["median_rps"] / p["median_rps"], 3),
                "target": row.target,
                "status": status,
                "note": row.note,
            })  # fmt: skip
        return {
            "rows": rows,
            "contenders": contenders,
            "problems": self.problems,
            "meta": {
                "path": f"/p/<pid>, pid uniform in 0..{self.keys - 1}",
                "keys": self.keys,
                # per framework: FastAPI's JSON is compact, Django's JsonResponse puts spaces
                "body_bytes": {c.framework: c.body_bytes for c in self.contenders if c.body_bytes},
                "rounds": self.rounds,
                "slices": self.slices,
                "wrk": {
                    "threads": self.threads,
                    "connections": self.connections,
                    "slice_seconds": self.slice_seconds,
                    "warmup_seconds": self.warmup,
                },
                "servers": {
                    "fastapi": " ".join(uvicorn_args("apps.fastapi_app:app", 0)[1:]),
                    "django": " ".join(
                        django_server_args(self.django_server, 0, self.django_threads)[1:]
                    ),
                },
                "django_server": self.django_server,
            },
        }

    def close(self) -> None:
        self.redis.close()


def _median_of(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in ("cachekit-web", "fastapi", "starlette", "uvicorn", "httptools", "uvloop",
                 "fastapi-cache2", "cashews", "django", "django-redis", "gunicorn", "redis",
                 "hiredis", "orjson"):  # fmt: skip
        with suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    out["wrk"] = wrk_version() or "missing"
    return out


# -- report ------------------------------------------------------------------------------------
HEADERS = ("case", "cachekit / subject", "req/s", "peer", "req/s", "ratio", "target", "status")


def _fmt_rps(rps: float | None) -> str:
    return "-" if rps is None else f"{rps:,.0f}"


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            row["case"],
            row["subject_label"],
            _fmt_rps(row["subject_rps"]),
            row["peer_label"],
            _fmt_rps(row["peer_rps"]),
            _fmt_ratio(row["ratio"]),
            row["target"],
            row["status"],
        )
        for row in results["rows"]
    ]


def text_table(results: dict[str, Any]) -> str:
    return aligned(HEADERS, table_rows(results))


def _sizes(body_bytes: dict[str, int]) -> str:
    return ", ".join(f"{size} B ({fw})" for fw, size in body_bytes.items())


def summary_line(results: dict[str, Any]) -> str:
    meta = results["meta"]
    wrk = meta["wrk"]
    return (
        f"wrk -t{wrk['threads']} -c{wrk['connections']}, {meta['rounds']} rounds x "
        f"{meta['slices']} slices of {wrk['slice_seconds']} s per contender, taken in turn; "
        f"req/s: median of rounds; ratio: median of back-to-back slice ratios "
        f"(higher = more throughput); {meta['keys']} pages of {_sizes(meta['body_bytes'])}; "
        f"{meta.get('elapsed_s', '?')} s"
    )


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    wrk = meta["wrk"]
    lines = [
        "# cachekit HTTP benchmark",
        "",
        f"Command: `{meta['command']}`  ",
        f"When: {meta['when']} on {meta['machine']}  ",
        f"Load: `wrk -t{wrk['threads']} -c{wrk['connections']}` on 127.0.0.1, "
        f"`GET {meta['path']}` ({_sizes(meta['body_bytes'])} of JSON each), every page cached "
        f"before the run; {wrk['warmup_seconds']} s of warm-up per server.  ",
        f"Rounds: {meta['rounds']}, each with fresh server processes; in a round the "
        f"contenders of a framework take {meta['slices']} turns of {wrk['slice_seconds']} s "
        "each (the order alternating), one server under load at a time.  ",
        "Figures: req/s is the median over rounds; a ratio is the median of the ratios "
        "between slices that ran back to back (higher = more throughput than the peer).  ",
        f"FastAPI server: `{meta['servers']['fastapi']}`  ",
        f"Django server: `{meta['servers']['django']}`  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "| " + " | ".join(HEADERS) + " | slice ratios (min-max) | note |",
        "|"
        + "|".join(["---", "---", "--:", "---", "--:", "--:", "---", "---", "--:", "---"])
        + "|",
    ]
    for cells, row in zip(table_rows(results), results["rows"], strict=True):
        spread = (
            f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
            if row["ratio_min"] is not None
            else "-"
        )
        lines.append("| " + " | ".join(cells) + f" | {spread} | {row['note']} |")
    lines += [
        "",
        "Per contender (median over rounds; server CPU: user + system time of the server "
        "process(es) per request, from /proc; view calls: how often the view's work ran during "
        "the measured slices; Redis commands per request from `INFO stats`):",
        "",
        "| contender | req/s | min | max | server CPU/req | p50 | p99 | view calls "
        "| Redis cmds/req |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key, c in results["contenders"].items():
        lines.append(
            f"| {c['label']} (`{key}`) | {_fmt_rps(c['median_rps'])} | "
            f"{_fmt_rps(c['min_rps'])} | {_fmt_rps(c['max_rps'])} | "
            f"{c['cpu_us_per_req']} us | {c['median_p50_ms']} ms | {c['median_p99_ms']} ms | "
            f"{sum(c['view_calls_per_round'])} | {c['redis_cmds_per_req']} |"
        )
    if results["problems"]:
        lines += ["", "Problems seen during the run:", ""]
        lines += [f"- {p}" for p in results["problems"]]
    return "\n".join(lines) + "\n"
