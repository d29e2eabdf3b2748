"""Run cachekit's benchmarks beside its peers: ``.venv/bin/python bench/run.py``.

Two suites, run one after the other (``--only core`` or ``--only http`` for one):

- **core** (``bench/bench_core.py``): the engine's hit paths, in one process. Writes
  ``bench/results/core.json`` and ``core.md``.
- **http** (``bench/bench_http.py``): the FastAPI and Django adapters through real servers
  (uvicorn, gunicorn) under ``wrk`` on 127.0.0.1. Writes ``bench/results/http.json`` and
  ``http.md``.

Then ``bench/results/summary.png`` charts the ratios of both (``bench/chart.py``).

Peers (cachetools, aiocache, cashews, django-redis, fastapi-cache2, ...) and the servers live
in a separate venv, ``bench/.venv``; this script re-executes itself there, creating it first if
missing (or if ``bench/requirements.txt`` or ``pyproject.toml`` changed). It starts one private
redis-server on a free loopback port (never 6379) for both suites. The http suite needs
``wrk``; when it is missing, the script installs it with apt-get (as root, or through sudo).

Core options: ``--rounds N`` (default 7), ``--mem-iters N`` (20000), ``--redis-iters N``
(3000). HTTP options: ``--http-rounds N`` (3), ``--http-slices N`` (5), ``--http-slice-seconds
N`` (1), ``--http-threads N`` (2), ``--http-connections N`` (32), ``--http-keys N`` (1000),
``--http-frameworks fastapi,django``, ``--django-server gunicorn|uvicorn``,
``--django-threads N`` (4).
``--quick`` (a smoke run, not for figures: core 3 rounds and a fifth of the iterations, http
1 round of 2 slices), ``--no-venv`` (run in the current interpreter, which must have the peers
installed), ``--strict`` (exit 1 when a target fails).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _table import aligned

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
VENV_PY = VENV / "bin" / "python"
STAMP = VENV / ".bench-installed"
REQUIREMENTS = BENCH / "requirements.txt"
RESULTS = BENCH / "results"


# -- the bench venv ----------------------------------------------------------------------------
def _in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _venv_stale() -> bool:
    if not VENV_PY.exists() or not STAMP.exists():
        return True
    stamp = STAMP.stat().st_mtime
    return any(p.stat().st_mtime > stamp for p in (REQUIREMENTS, ROOT / "pyproject.toml"))


def ensure_venv() -> None:
    if not _venv_stale():
        return
    if not VENV_PY.exists():
        base = getattr(sys, "_base_executable", None) or sys.executable
        print(f"creating {VENV.relative_to(ROOT)} with {base}", file=sys.stderr)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    print(
        "installing cachekit[redis,django,fastapi] and bench/requirements.txt into bench/.venv",
        file=sys.stderr,
    )
    subprocess.run(
        [
            str(VENV_PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            ".[redis,django,fastapi]",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        cwd=ROOT,
    )
    STAMP.touch()


def reexec_in_venv() -> None:
    ensure_venv()
    os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])


def ensure_wrk() -> bool:
    """``wrk`` on PATH, installing Debian's package when missing (root, or through sudo)."""
    if shutil.which("wrk"):
        return True
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return False
    print("installing wrk with apt-get", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, check=False)
        if done.returncode != 0:
            print(done.stderr.decode(errors="replace")[-500:], file=sys.stderr)
            return False
    return shutil.which("wrk") is not None


# -- formatting --------------------------------------------------------------------------------
def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} us"
    return f"{ns / 1_000_000:.2f} ms"


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


HEADERS = ("case", "cachekit / subject", "median", "peer", "median", "ratio", "target", "status")


def table_rows(results: dict) -> list[tuple[str, ...]]:
    out = []
    for row in results["rows"]:
        out.append((
            row["case"],
            row["subject_label"],
            fmt_ns(row["subject_ns"]),
            row["peer_label"] or "(absolute)",
            fmt_ns(row["peer_ns"]),
            fmt_ratio(row["ratio"]),
            row["target"],
            row["status"],
        ))  # fmt: skip
    return out


def text_table(results: dict) -> str:
    return aligned(HEADERS, table_rows(results))


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# cachekit core benchmark",
        "",
        f"Command: `{meta['command']}`  ",
        f"When: {meta['when']} on {meta['machine']}  ",
        f"Rounds: {meta['rounds']} interleaved; iterations per round: {meta['mem_iters']} "
        f"(in-memory), {meta['redis_iters']} (Redis), in 10 slices taken in turn with the "
        "peers'; figures are medians per operation over rounds, ratios the median of "
        "slice-by-slice ratios (both sides ran back to back).  ",
        f"Loop overhead included in every figure: {fmt_ns(meta['loop_overhead_ns']['sync'])} "
        f"(sync), {fmt_ns(meta['loop_overhead_ns']['async'])} (async).  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "| " + " | ".join(HEADERS) + " | note |",
        "|" + "|".join(["---", "---", "--:", "---", "--:", "--:", "---", "---", "---"]) + "|",
    ]
    for cells, row in zip(table_rows(results), results["rows"], strict=True):
        lines.append("| " + " | ".join(cells) + f" | {row['note']} |")
    lines += [
        "",
        "Per contender (median, min, max over rounds):",
        "",
        "| contender | median | min | max |",
        "|---|--:|--:|--:|",
    ]
    for name, c in results["contenders"].items():
        lines.append(
            f"| {c['label']} (`{name}`) | {fmt_ns(c['median_ns'])} | "
            f"{fmt_ns(c['min_ns'])} | {fmt_ns(c['max_ns'])} |"
        )
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------------
def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpu, {platform.system()} {platform.release()}"


def run_core(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    from bench_core import Bench, versions

    started = time.monotonic()
    print(
        f"core: python {sys.executable}; rounds={args.rounds} mem_iters={args.mem_iters} "
        f"redis_iters={args.redis_iters}",
        file=sys.stderr,
    )
    bench = Bench(redis_url, mem_iters=args.mem_iters, redis_iters=args.redis_iters)
    try:
        bench.setup_l1_sync()
        bench.setup_l1_async()
        bench.setup_l2_sync()
        bench.setup_l2_async()
        overhead = bench.loop_overhead()
        bench.run(args.rounds, progress=lambda m: print(m, file=sys.stderr, flush=True))
        results = bench.results()
    finally:
        bench.close()

    results["meta"].update(
        command="python bench/run.py " + " ".join(sys.argv[1:]),
        when=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        machine=machine(),
        rounds=args.rounds,
        mem_iters=args.mem_iters,
        redis_iters=args.redis_iters,
        loop_overhead_ns={k: round(v, 1) for k, v in overhead.items()},
        versions=versions(),
        elapsed_s=round(time.monotonic() - started, 1),
    )

    print()
    print(text_table(results))
    print()
    meta = results["meta"]
    print(
        f"medians of {args.rounds} interleaved rounds (ratio: median of paired per-slice "
        "ratios); loop overhead in every figure: "
        f"{fmt_ns(meta['loop_overhead_ns']['sync'])} sync, "
        f"{fmt_ns(meta['loop_overhead_ns']['async'])} async; "
        f"value sizes in Redis: {meta.get('l2_value_bytes')}; "
        f"round trips per read: sync {meta.get('round_trips_sync')}, "
        f"async {meta.get('round_trips_async')}; {meta['elapsed_s']} s"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "core.md").write_text(markdown(results))
    print(f"wrote {args.out / 'core.json'} and {args.out / 'core.md'}")
    return results


def run_http(args: argparse.Namespace, redis_url: str) -> dict[str, Any] | None:
    import bench_http

    if not ensure_wrk():
        print("error: wrk is not installed and could not be installed (apt-get install wrk); "
              "skipping the http suite", file=sys.stderr)  # fmt: skip
        return None
    frameworks = tuple(f.strip() for f in args.http_frameworks.split(",") if f.strip())
    started = time.monotonic()
    print(
        f"http: rounds={args.http_rounds} slices={args.http_slices}x{args.http_slice_seconds}s "
        f"wrk -t{args.http_threads} -c{args.http_connections}; keys={args.http_keys}; "
        f"django server: {args.django_server}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="cachekit-bench-http-") as tmp:
        bench = bench_http.HttpBench(
            redis_url,
            rounds=args.http_rounds,
            slices=args.http_slices,
            slice_seconds=args.http_slice_seconds,
            warmup=args.http_warmup,
            threads=args.http_threads,
            connections=args.http_connections,
            django_server=args.django_server,
            django_threads=args.django_threads,
            frameworks=frameworks,
            keys=args.http_keys,
            log_dir=Path(tmp),
        )
        try:
            bench.run(progress=lambda m: print(m, file=sys.stderr, flush=True))
        except Exception:
            for log in sorted(Path(tmp).glob("*.log")):  # the servers' own words
                text = log.read_text(errors="replace").strip()
                if text:
                    print(f"--- {log.name}\n{text[-3000:]}", file=sys.stderr)
            raise
        finally:
            bench.close()
        results = bench.results()
    results["meta"].update(
        command="python bench/run.py " + " ".join(sys.argv[1:]),
        when=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        machine=machine(),
        versions=bench_http.versions(),
        elapsed_s=round(time.monotonic() - started, 1),
    )
    print()
    print(bench_http.text_table(results))
    print()
    print(bench_http.summary_line(results))
    for problem in results["problems"]:
        print(f"problem: {problem}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "http.md").write_text(bench_http.markdown(results))
    print(f"wrote {args.out / 'http.json'} and {args.out / 'http.md'}")
    return results


def draw_summary(out: Path) -> None:
    try:
        from chart import render_dir
    except ImportError as exc:  # matplotlib missing (e.g. --no-venv)
        print(f"no summary chart: {exc}", file=sys.stderr)
        return
    written = render_dir(out)
    if written is not None:
        print(f"wrote {written}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("core", "http"), help="run one suite only")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mem-iters", type=int, default=20_000)
    parser.add_argument("--redis-iters", type=int, default=3_000)
    parser.add_argument("--http-rounds", type=int, default=3)
    parser.add_argument("--http-slices", type=int, default=5, help="turns per round")
    parser.add_argument("--http-slice-seconds", type=int, default=1)
    parser.add_argument("--http-warmup", type=int, default=1, help="wrk seconds per server")
    parser.add_argument("--http-threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--http-connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--http-keys", type=int, default=1000, help="distinct pages requested")
    parser.add_argument("--http-frameworks", default="fastapi,django")
    parser.add_argument("--django-server", choices=("gunicorn", "uvicorn"), default="gunicorn")
    parser.add_argument("--django-threads", type=int, default=4, help="gunicorn gthread threads")
    parser.add_argument("--quick", action="store_true", help="smoke run, not for figures")
    parser.add_argument("--no-venv", action="store_true", help="use the current interpreter")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()

    if not args.no_venv and not _in_bench_venv():
        reexec_in_venv()  # does not return
    if args.quick:
        args.rounds = 3
        args.mem_iters //= 5
        args.redis_iters //= 5
        args.http_rounds = 1
        args.http_slices = 2

    sys.path.insert(0, str(ROOT))  # tests.support.redis_server, and cachekit_core if not installed
    sys.path.insert(0, str(BENCH))
    from tests.support.redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        print(f"error: {exc} (`make redis-server` installs it)", file=sys.stderr)
        return 2
    failed: list[dict[str, Any]] = []
    ran_http = True
    try:
        print(f"private redis-server on {server.url}", file=sys.stderr)
        if args.only in (None, "core"):
            core = run_core(args, server.url)
            failed += [r for r in core["rows"] if r["status"] == "FAIL"]
        if args.only in (None, "http"):
            if args.only is None:
                print()
            http = run_http(args, server.url)
            ran_http = http is not None
            if http is not None:
                failed += [r for r in http["rows"] if r["status"] == "FAIL"]
    finally:
        server.close()
    draw_summary(args.out)
    if args.only == "http" and not ran_http:
        return 2
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
