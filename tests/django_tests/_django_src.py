"""Django's own test suites for the installed Django, fetched at test time and never vendored.

``pip download`` fetches the sdist of the installed version once; only ``tests/cache/`` and
``tests/sessions_tests/`` are extracted, under ``.pytest_cache/`` (git-ignored), and reused by
later runs. The classes run in a subprocess (``_suite_runner``) because they need Django's test
apps in ``INSTALLED_APPS`` before ``django.setup()``, which this pytest process has long done.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django
import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE_DIRS = ("cache", "sessions_tests")
SUMMARIES: list[str] = []  # printed by conftest's pytest_terminal_summary


class SourceUnavailable(Exception):
    """Django's sources for the installed version could not be fetched."""


def _cache_root() -> Path:
    root = os.environ.get("CACHEKIT_DJANGO_SRC") or ROOT / ".pytest_cache" / "cachekit-django-src"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def django_tests_dir() -> Path:
    """A directory holding Django's ``cache`` and ``sessions_tests`` test packages."""
    version = django.__version__
    root = _cache_root()
    target = root / f"django-{version}"
    if (target / ".complete").exists():
        return target
    # Several pytest runs (several engineers, one tree) may race: one downloads, others wait.
    with open(root / f"django-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            sdist = _download(version, Path(tmp))
            staging = Path(tmp) / "tests"
            _extract(sdist, version, staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        (target / ".complete").touch()
    return target


def _download(version: str, into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", f"django=={version}",
        "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(into),
    ]  # fmt: skip
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceUnavailable(f"pip download django=={version}: {exc}") from exc
    found = sorted(into.glob("*.tar.gz"))
    if proc.returncode or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SourceUnavailable(f"pip download django=={version} failed: {' | '.join(tail)}")
    return found[0]


def _extract(sdist: Path, version: str, into: Path) -> None:
    into.mkdir()
    prefixes = [f"django-{version}/tests/{name}/" for name in SUITE_DIRS]
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            for prefix in prefixes:
                if member.name.startswith(prefix) and member.isfile():
                    # Drop the "django-X/tests/" part: members land as cache/..., sessions_tests/...
                    member.name = member.name.split("/tests/", 1)[1]
                    members.append(member)
        if not members:
            raise SourceUnavailable(f"{sdist.name} has no tests/{SUITE_DIRS}")
        archive.extractall(into, members=members, filter="data")


@dataclass
class ClassResult:
    passed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass
class SuiteResult:
    name: str
    classes: dict[str, ClassResult]
    output: str

    def check(self, class_name: str) -> None:
        """Fail the calling pytest test if ``class_name`` had failures or ran nothing."""
        result = self.classes.get(class_name)
        if result is None:
            pytest.fail(f"{class_name} did not run; runner output:\n{self.output[-4000:]}")
        counts = (
            f"{class_name}: {result.passed} passed, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped, {len(result.excluded)} excluded"
        )
        SUMMARIES.append(counts)
        if result.failed:
            details = "\n\n".join(f"{test}\n{text[-3000:]}" for test, text in result.failed.items())
            pytest.fail(f"{counts}\n\n{details}", pytrace=False)
        if not result.passed:
            pytest.fail(f"{counts}: nothing passed", pytrace=False)


def run_suite(suite: str, redis_url: str, workdir: Path) -> SuiteResult:
    """Run one suite of ``_suites`` in a subprocess; skip (fail under CI) without sources."""
    try:
        tests_dir = django_tests_dir()
    except SourceUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Django's test sources are required under CI: {exc}")
        pytest.skip(f"Django's test sources unavailable: {exc}")
    out = workdir / f"{suite}.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_tests.settings",
        "CACHEKIT_DJANGO_EXTRA_APPS": ",".join(SUITE_DIRS),
        "CACHEKIT_DJANGO_TESTS_DIR": str(tests_dir),
        "CACHEKIT_SUITE_REDIS_URL": redis_url,
    }
    command = [sys.executable, "-m", "tests.django_tests._suite_runner", suite, str(out)]
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    output = proc.stdout + proc.stderr
    if not out.exists():
        pytest.fail(f"the {suite} suite runner crashed (exit {proc.returncode}):\n{output[-6000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    classes = {name: ClassResult(**fields) for name, fields in data["classes"].items()}
    return SuiteResult(suite, classes, output)
