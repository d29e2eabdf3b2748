"""With i18n_patterns, LocaleMiddleware takes the language from the URL only (an unprefixed
URL is LANGUAGE_CODE's): a URLconf of its own for ``test_page_scope.py``."""

from django.conf.urls.i18n import i18n_patterns
from django.urls import path

from .pages_urls import lang

urlpatterns = i18n_patterns(path("prefixed/", lang), prefix_default_language=False)
