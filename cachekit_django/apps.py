"""The Django app: add ``"cachekit_django"`` to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig


class CachekitDjangoConfig(AppConfig):
    name = "cachekit_django"
    verbose_name = "cachekit"

    def ready(self) -> None:
        # Imported here, not at module level: both need the app registry to be ready.
        from . import checks, invalidation

        checks.register()
        invalidation.connect()
