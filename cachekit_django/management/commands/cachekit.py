"""``manage.py cachekit stats | clear | warm URL... | check``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachekit_django import checks, conf


class Command(BaseCommand):
    help = (
        "Inspect, clear, warm or check the engine of cachekit's pages, fragments and "
        'invalidation (the CACHES alias named by CACHEKIT["CACHE"], default "default").'
    )
    # `check` runs the cachekit checks itself, and `clear` must work while Redis is down.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        stats = actions.add_parser("stats", help="hit/miss counters, layers and Redis memory")
        stats.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
        actions.add_parser("clear", help="remove every entry of the namespace (no FLUSHDB)")
        warm = actions.add_parser("warm", help="render URLs in-process so they are cached")
        warm.add_argument("urls", nargs="+", metavar="URL", help="a path or an absolute URL")
        warm.add_argument("--host", help="host for relative URLs (default: from ALLOWED_HOSTS)")
        actions.add_parser("check", help="settings and Redis reachability")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"handle_{action}")(**options)

    # -- stats ---------------------------------------------------------------------------------
    def handle_stats(self, *, as_json: bool = False, **options: Any) -> None:
        cache = conf.engine()
        stats: dict[str, Any] = {"cache": repr(cache), **cache.stats()}
        redis_info = {}
        for url in checks.redis_urls():
            redis_info[checks.safe_url(url)] = _redis_info(url)
        if redis_info:
            stats["redis_servers"] = redis_info
        if as_json:
            self.stdout.write(json.dumps(stats, indent=2, default=str))
            return
        self.stdout.write(self.style.MIGRATE_HEADING(stats.pop("cache")))
        self.stdout.write("(counters are this process's; Redis figures are server-wide)")
        for line in _flatten(stats):
            self.stdout.write(f"  {line}")

    # -- clear ---------------------------------------------------------------------------------
    def handle_clear(self, **options: Any) -> None:
        cache = conf.engine()
        if not cache.clear():
            # The engine would replay it once Redis is back, but this process is about to exit.
            raise CommandError(f"Redis is unreachable: namespace {cache.namespace!r} not cleared")
        self.stdout.write(self.style.SUCCESS(f"Cleared namespace {cache.namespace!r}."))

    # -- warm ----------------------------------------------------------------------------------
    def handle_warm(self, *, urls: list[str], host: str | None = None, **options: Any) -> None:
        from django.test import Client

        cache = conf.engine()
        if cache.shared is None:
            self.stderr.write(
                self.style.WARNING(
                    "The cache is in-process only: pages warmed by this command die with it. "
                    f"Point the LOCATION of CACHES[{conf.cache_alias()!r}] at Redis to warm a "
                    "shared cache."
                )
            )
        client = Client(raise_request_exception=False)
        default_host = host or _default_host()
        failed: list[str] = []
        with self._progress(len(urls)) as advance:
            for url in urls:
                parts = urlsplit(url)
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                response = client.get(
                    path,
                    HTTP_HOST=parts.netloc or default_host,
                    secure=parts.scheme == "https",
                )
                state = response.headers.get("X-Cache", "-")
                if response.status_code >= 400:
                    failed.append(f"{url}: {response.status_code}")
                advance(f"{response.status_code} {state} {url}")
        if failed:
            raise CommandError(f"{len(failed)} URL(s) failed: " + "; ".join(failed))
        self.stdout.write(self.style.SUCCESS(f"Warmed {len(urls)} URL(s)."))

    @contextmanager
    def _progress(self, total: int) -> Iterator[Any]:
        out = getattr(self.stderr, "_out", sys.stderr)  # the stream under Django's wrapper
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:  # the `django` extra installs rich; degrade to plain lines
            yield lambda line: self.stderr.write(line)
            return
        with Progress(console=Console(file=out), transient=False) as progress:
            task = progress.add_task("warming", total=total)

            def advance(line: str) -> None:
                progress.console.print(line, markup=False, highlight=False)
                progress.advance(task)

            yield advance

    # -- check ---------------------------------------------------------------------------------
    def handle_check(self, **options: Any) -> None:
        messages = checks.check_settings() + checks.check_engines() + checks.check_middleware()
        self._describe_engine()
        targets = checks.redis_targets()
        for url, users in targets.items():
            if checks.ping(url) is None:
                where = f"Redis at {checks.safe_url(url)} ({', '.join(users)})"
                self.stdout.write(self.style.SUCCESS(f"{where}: OK"))
        messages += checks.check_redis()
        for message in messages:
            style = self.style.ERROR if message.is_serious() else self.style.WARNING
            self.stdout.write(style(f"{message.id}: {message.msg}"))
            if message.hint:
                self.stdout.write(f"    HINT: {message.hint}")
        # W001 and W003 are warnings for `manage.py check` (the site runs), but this command
        # is asked whether the cache works as configured: they fail it.
        if any(m.is_serious() or m.id in ("cachekit.W001", "cachekit.W003") for m in messages):
            raise CommandError(f"{len(messages)} problem(s) found.")
        self.stdout.write(self.style.SUCCESS("cachekit configuration OK."))

    def _describe_engine(self) -> None:
        """Say which store pages, fragments and invalidation use: the first thing to know."""
        try:
            source = conf.source()
        except ImproperlyConfigured:
            return  # reported by check_settings
        where = f"CACHES[{source.alias!r}]" if source.alias else "deprecated CACHEKIT settings"
        self.stdout.write(f"Pages, fragments and invalidation: {where}, {source.spec.describe()}")
        if source.spec.redis_url is None:
            self.stdout.write(
                "The engine is in-process only: each process keeps its own pages and fragments."
            )


def _default_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return str(host)
    return "localhost"


def _redis_info(url: str) -> dict[str, Any]:
    try:
        client = checks.redis_client(url, 0.5)
        try:
            info = client.info()
        finally:
            client.close()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    wanted = ("redis_version", "used_memory_human", "keyspace_hits", "keyspace_misses")
    return {k: info.get(k) for k in wanted}


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}: {value}"
