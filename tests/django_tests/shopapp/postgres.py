"""An optional second database for the tests: PostgreSQL on 127.0.0.1:5432 (trust auth, user
``postgres``) when it answers and psycopg is installed. Each run gets a throwaway test database
of its own (several runs may share the server). ``CACHEKIT_TEST_POSTGRES=0`` turns it off."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

HOST, PORT = "127.0.0.1", 5432


def postgres_databases() -> dict[str, dict[str, Any]]:
    """``{"postgres": {...}}`` for ``DATABASES``, or ``{}`` when PostgreSQL is unavailable."""
    if os.environ.get("CACHEKIT_TEST_POSTGRES", "1") == "0":
        return {}
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return {}
    try:
        socket.create_connection((HOST, PORT), timeout=0.3).close()
    except OSError:
        return {}
    name = f"cachekit_test_{os.getpid()}_{secrets.token_hex(3)}"
    return {
        "postgres": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": HOST,
            "PORT": PORT,
            "USER": "postgres",
            "NAME": "postgres",  # only to connect; the tests run in TEST["NAME"]
            "TEST": {"NAME": name},
        }
    }
