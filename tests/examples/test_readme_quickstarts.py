"""The README's Django and FastAPI quick starts, executed as written, so they cannot rot.

Each test extracts the fenced ``python`` block under its heading and changes only what the
README leaves to the reader; every substitution is listed (``DJANGO_SUBSTITUTIONS``) and must
match exactly once, so a README edit that breaks one fails here instead of passing silently.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]


def readme_block(heading: str) -> str:
    """The one fenced python block in the README section ``## <heading>``."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"expected one python block under '## {heading}'"
    return str(blocks[0])


def substitute(source: str, substitutions: list[tuple[str, str]]) -> str:
    for old, new in substitutions:
        assert source.count(old) == 1, f"the README no longer contains {old!r} exactly once"
        source = source.replace(old, new)
    return source


# (README text, replacement): the `...` placeholders the reader fills in, and the views'
# bodies. Redis URLs are pointed at the test's private server (never 6379) separately.
DJANGO_SUBSTITUTIONS = [
    # "..." = the project's own apps: sessions (for the session engine) and the stand-in app
    # holding the `Product` model the views use.
    (
        'INSTALLED_APPS = [..., "cachekit_django"]',
        'INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.sessions", '
        '"quickstart", "cachekit_django"]',
    ),
    # "..." = the rest of the project's middleware: Django's session middleware.
    (
        'MIDDLEWARE = ["cachekit_django.middleware.CacheMiddleware", ...]',
        'MIDDLEWARE = ["cachekit_django.middleware.CacheMiddleware", '
        '"django.contrib.sessions.middleware.SessionMiddleware"]',
    ),
    # The views' `...` bodies: render the products' names.
    (
        "def product_list(request): ...",
        "def product_list(request):\n"
        '    return HttpResponse(",".join(p.name for p in Product.objects.order_by("pk")))',
    ),
    (
        "def product_detail(request, pk): ...",
        "def product_detail(request, pk):\n"
        "    return HttpResponse(Product.objects.get(pk=pk).name)",
    ),
]
# What the README's settings.py leaves out because every project already has it.
DJANGO_SETTINGS_TAIL = """
SECRET_KEY = "quickstart-test"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "quickstart.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}}
"""
DJANGO_APP = {
    "__init__.py": "",
    "models.py": """
        from django.db import models


        class Product(models.Model):  # the stand-in for the reader's model
            name = models.CharField(max_length=50)
        """,
    "urls.py": """
        from django.urls import path

        from quickstart.views import product_detail, product_list

        urlpatterns = [
            path("products/", product_list),
            path("products/<int:pk>/", product_detail),
        ]
        """,
}
DJANGO_CHECK = """
import importlib
import json
import os

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "quickstart.settings"
django.setup()
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from quickstart.models import Product

call_command("migrate", run_syncdb=True, verbosity=0)
tea, mug = Product.objects.create(name="Tea"), Product.objects.create(name="Mug")
client = Client()
seen = []


def get(url):
    response = client.get(url)
    assert response.status_code == 200, response
    seen.append([url, response.headers.get("X-Cache"), response.content.decode()])


for url in ["/products/", "/products/", f"/products/{tea.pk}/", f"/products/{tea.pk}/",
            f"/products/{mug.pk}/", f"/products/{mug.pk}/"]:
    get(url)
tea.name = "Green tea"
tea.save()  # "Saving ... a Product re-renders both pages"
for url in ["/products/", f"/products/{tea.pk}/", f"/products/{mug.pk}/"]:
    get(url)
Product.objects.filter(pk=mug.pk).update(name="Cup")  # "so do QuerySet.update() ..."
for url in ["/products/", f"/products/{mug.pk}/"]:
    get(url)

session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
session["cart"] = {"1": 2}
session.save()
reloaded = importlib.import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
cache.set("answer", 42)
print(json.dumps({"pages": seen, "session": reloaded["cart"], "cache": cache.get("answer")}))
"""


def test_readme_django_quick_start(tmp_path: Path, redis_url: str) -> None:
    block = readme_block("Quick start: Django")
    settings_src, views_src = block.split("# views.py\n")
    assert settings_src.startswith("# settings.py\n")
    settings_src = substitute(settings_src, DJANGO_SUBSTITUTIONS[:2])
    # The README's one Redis URL (the CACHES alias everything runs on) on the test's server.
    server = redis_url.rsplit("/", 1)[0]
    assert settings_src.count("redis://127.0.0.1:6379/") == 1
    settings_src = settings_src.replace("redis://127.0.0.1:6379", server)
    views_src = substitute(views_src, DJANGO_SUBSTITUTIONS[2:])
    imports = "from django.http import HttpResponse\n\nfrom quickstart.models import Product\n"
    views_src = imports + views_src

    app = tmp_path / "quickstart"
    app.mkdir()
    for name, source in DJANGO_APP.items():
        (app / name).write_text(textwrap.dedent(source))
    db = tmp_path / "db.sqlite3"
    (app / "settings.py").write_text(f"DB = {str(db)!r}\n{settings_src}{DJANGO_SETTINGS_TAIL}")
    (app / "views.py").write_text(views_src)
    (tmp_path / "check.py").write_text(DJANGO_CHECK)

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{REPO}"}
    run = subprocess.run(
        [sys.executable, "check.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    tea, mug = (f"/products/{pk}/" for pk in (1, 2))
    assert result["pages"] == [
        ["/products/", "MISS", "Tea,Mug"],
        ["/products/", "HIT", "Tea,Mug"],
        [tea, "MISS", "Tea"],
        [tea, "HIT", "Tea"],
        [mug, "MISS", "Mug"],
        [mug, "HIT", "Mug"],
        # tea.save(): the list and tea's page re-render; mug's page stays cached.
        ["/products/", "MISS", "Green tea,Mug"],
        [tea, "MISS", "Green tea"],
        [mug, "HIT", "Mug"],
        # QuerySet.update(): invalidates the model's tag (which rows matched is unknown), so
        # the list re-renders ...
        ["/products/", "MISS", "Green tea,Cup"],
        # ... but not the detail page, whose only tag is tag_for(Product, pk): it keeps the
        # old name until its TTL. (The README's "so do QuerySet.update() ..." after "re-renders
        # both pages" overstates this; a page that must follow bulk writes needs the model tag.)
        [mug, "HIT", "Mug"],
    ]
    assert result["session"] == {"1": 2}
    assert result["cache"] == 42


def test_readme_fastapi_quick_start() -> None:
    """Executed verbatim: the block needs no substitution (``Cache()`` is in-process)."""
    namespace: dict[str, object] = {}
    source = readme_block("Quick start: FastAPI")
    exec(compile(source, "README.md (Quick start: FastAPI)", "exec"), namespace)
    app, cache = namespace["app"], namespace["cache"]
    with TestClient(app) as client:  # type: ignore[arg-type]
        first = client.get("/products/1")
        assert first.json() == {"id": 1, "name": "Product 1"}
        assert first.headers["x-cache"] == "MISS"
        assert first.headers["cache-control"] == "public, max-age=60"
        second = client.get("/products/1")
        assert (second.headers["x-cache"], second.json()) == ("HIT", first.json())
        etag = second.headers["etag"]
        assert client.get("/products/1", headers={"If-None-Match": etag}).status_code == 304
        cache.invalidate_tags("products:1")  # type: ignore[attr-defined]
        assert client.get("/products/1").headers["x-cache"] == "MISS"
        assert client.get("/products/2").headers["x-cache"] == "MISS"
        assert client.get("/products/2").headers["x-cache"] == "HIT"
