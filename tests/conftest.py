"""The fixed cast of every test: an owner, a viewer, an installer, a stranger and staff."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def service_reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def require_service(env_var: str, default_port: int) -> str:
    """The URL of a real service for this test; skip on a laptop without it, fail in CI.

    The service URL comes from ``env_var`` or the machine's default on 127.0.0.1.
    """
    defaults = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "MQTT_URL": "mqtt://127.0.0.1:1883",
    }
    url = os.environ.get(env_var) or defaults[env_var]
    if not service_reachable(url, default_port):
        message = f"{env_var} service at {url} is unreachable"
        if IN_CI:
            pytest.fail(f"{message}; CI must exercise it", pytrace=False)
        pytest.skip(f"{message} (start it, or run in CI where it is required)")
    return url


@pytest.fixture
def redis_url() -> str:
    return require_service("REDIS_URL", 6379)


@pytest.fixture
def postgres_url() -> str:
    return require_service("DATABASE_URL", 5432)


@pytest.fixture
def mqtt_url() -> str:
    return require_service("MQTT_URL", 1883)


def _make_user(django_user_model, username: str, **extra):
    return django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)


@pytest.fixture
def owner(django_user_model):
    return _make_user(django_user_model, "owner")


@pytest.fixture
def viewer(django_user_model):
    return _make_user(django_user_model, "viewer")


@pytest.fixture
def installer(django_user_model):
    return _make_user(django_user_model, "installer")


@pytest.fixture
def stranger(django_user_model):
    return _make_user(django_user_model, "stranger")


@pytest.fixture
def staff(django_user_model):
    return _make_user(django_user_model, "staff", is_staff=True, is_superuser=True)


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's SQLite side files (the test database itself is dropped by pytest-django)."""
    from pathlib import Path

    from django.conf import settings

    if not settings.configured:  # run without the Django plugin (pure numpy tests)
        return
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name:
        for suffix in ("-wal", "-shm", "-journal"):
            Path(name + suffix).unlink(missing_ok=True)
