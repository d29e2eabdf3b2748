"""Run Starlette's own session tests against cachekit's ``SessionMiddleware``.

The test file is fetched at test time from the sdist of the *installed* Starlette version (it
is never committed here), its import of the middleware is pointed at a shim that binds a
cachekit ``Cache``, and nothing else of it changes. It runs in a subprocess because its package
is also called ``tests``. Set ``CACHEKIT_TEST_DOWNLOADS`` to keep the sdist somewhere else.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

VERSION = importlib.metadata.version("starlette")
SUITE = "tests/middleware/test_session.py"
HELPERS = ("tests/types.py",)  # what the suite imports from Starlette's own tests package
PROJECT = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"^from starlette\.middleware\.sessions import (?P<names>.+)$", re.MULTILINE)

SHIM = '''\
"""SessionMiddleware bound to a cachekit Cache (written by cachekit's suite runner)."""

import os

from cachekit_core import Cache
from cachekit_fastapi import sessions

Session = sessions.Session
REDIS_URL = os.environ.get("CACHEKIT_SUITE_REDIS_URL")


class SessionMiddleware(sessions.SessionMiddleware):
    def __init__(self, app, *args, **kwargs):
        cache = Cache.from_url(REDIS_URL, secret_key="test-secret") if REDIS_URL else Cache()
        super().__init__(app, *args, cache=cache, **kwargs)

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if REDIS_URL:
                # A TestClient used without `with` runs every request on a new event loop;
                # close that loop's Redis connections as an app's lifespan would, or they
                # leak and raise ResourceWarning once the loop is gone.
                await self.cache.aclose()
'''

# Starlette's conftest builds test_client_factory from anyio's backend fixtures; this is the
# same fixture, without Starlette's optional blocking-call detector.
CONFTEST = """\
import functools

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def test_client_factory(anyio_backend_name, anyio_backend_options):
    return functools.partial(
        TestClient, backend=anyio_backend_name, backend_options=anyio_backend_options
    )
"""

PYTEST_INI = """\
[pytest]
addopts = --strict-config --strict-markers -p no:cacheprovider
xfail_strict = true
filterwarnings = error
"""


def _download_dir(config: pytest.Config) -> Path:
    configured = os.environ.get("CACHEKIT_TEST_DOWNLOADS")
    if configured:
        path = Path(configured)
    elif getattr(config, "cache", None) is not None:
        path = config.cache.mkdir("starlette-sdist")
    else:
        path = Path(tempfile.gettempdir()) / "cachekit-test-downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sdist(config: pytest.Config) -> Path:
    """The sdist of the installed Starlette, downloaded once and kept."""
    target = _download_dir(config) / f"starlette-{VERSION}.tar.gz"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", f"starlette=={VERSION}", "--no-deps",
            "--no-binary", ":all:", "--disable-pip-version-check", "--quiet", "-d", tmp,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"pip download starlette=={VERSION} failed: {exc}")
        found = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not found:
            _unavailable(f"pip download starlette=={VERSION} failed: {done.stderr[-1500:]}")
        # Replace atomically, so a concurrent or interrupted run never sees half a file.
        os.replace(found[0], target)
    return target


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (under CI this fails instead of skipping)")
    pytest.skip(reason)


def _prepare(sdist: Path, root: Path) -> None:
    """Lay out Starlette's suite under ``root``, importing our middleware via the shim."""
    with tarfile.open(sdist) as tar:
        # Members are named "starlette-<version>/<path>"; read only the files we need.
        members = {m.name.partition("/")[2]: m for m in tar.getmembers() if m.isfile()}
        for name in (SUITE, *HELPERS):
            member = members.get(name)
            source = tar.extractfile(member) if member is not None else None
            if source is None:
                pytest.fail(f"the starlette {VERSION} sdist has no {name}: update this runner")
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source.read())
    for package in ("tests", "tests/middleware"):
        (root / package / "__init__.py").touch()
    suite = root / SUITE
    text = suite.read_text()
    found = IMPORT.findall(text)
    if len(found) != 1:
        pytest.fail(f"expected one import of starlette's SessionMiddleware in {SUITE}: {found}")
    suite.write_text(IMPORT.sub(r"from _cachekit_shim import \g<names>", text))
    (root / "_cachekit_shim.py").write_text(SHIM)
    (root / "tests" / "conftest.py").write_text(CONFTEST)
    (root / "pytest.ini").write_text(PYTEST_INI)


@pytest.fixture(scope="module")
def suite_root(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("starlette-suite")
    _prepare(_sdist(pytestconfig), root)
    return root


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_starlettes_session_suite_passes(
    suite_root: Path,
    backend: str,
    request: pytest.FixtureRequest,
    record_property: object,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    # Load only the plugin the suite needs (anyio's), whatever else is installed here.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if backend == "redis":
        env["CACHEKIT_SUITE_REDIS_URL"] = request.getfixturevalue("redis_url")
    report = suite_root / f"report-{backend}.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "anyio.pytest_plugin", "-q", SUITE,
         f"--junitxml={report}"],
        cwd=suite_root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert report.exists(), f"the inner pytest run produced no report:\n{output}"
    totals = ET.parse(report).getroot()
    suite = totals if totals.tag == "testsuite" else totals.find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    summary = (
        f"starlette=={VERSION} {SUITE} on cachekit SessionMiddleware (cache={backend}): "
        f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
        f"{counts['skipped']} skipped"
    )
    record_property("starlette_suite", summary)  # type: ignore[operator]
    assert done.returncode == 0 and counts["failures"] == counts["errors"] == 0, (
        f"{summary}\n{output}"
    )
    assert passed > 0, f"{summary}: nothing ran\n{output}"
    assert counts["skipped"] == 0, f"{summary}\n{output}"
