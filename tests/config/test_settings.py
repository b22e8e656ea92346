"""Settings come from environment variables and fail loudly on bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
HTTPS_VARS = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)
SERVICE_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "MQTT_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "TIME_ZONE",
    "CSRF_TRUSTED_ORIGINS",
    *HTTPS_VARS,
)
# Long and varied enough for check --deploy (50+ characters, 5+ different ones).
DEPLOY_SECRET_KEY = "deploy-check-" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"

PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_config": settings.CHANNEL_LAYERS["default"].get("CONFIG"),
    "mqtt": settings.MQTT_URL,
    "debug": settings.DEBUG,
    "hosts": settings.ALLOWED_HOSTS,
    "tz": settings.TIME_ZONE,
    "https": {name: getattr(settings, name) for name in ('SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER')},
}))
"""


def load_settings(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60
    )


def loaded(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_defaults_to_sqlite_and_the_in_memory_layer(tmp_path):
    values = loaded(load_settings(tmp_path, SECRET_KEY="x"))
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"].startswith(str(tmp_path))
    assert values["layer"] == "config.layers.InMemoryChannelLayer"
    assert values["mqtt"] is None
    assert values["debug"] is False
    assert values["tz"] == "UTC"


def test_it_uses_postgres_redis_and_mqtt_from_the_variables(tmp_path):
    values = loaded(
        load_settings(
            tmp_path,
            SECRET_KEY="x",
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
            REDIS_URL="redis://127.0.0.1:6379/0",
            MQTT_URL="mqtt://127.0.0.1:1883",
        )
    )
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "test"
    assert values["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    # pub/sub channels are not scoped by database: the prefix carries its number (see settings)
    assert values["layer_config"] == {"hosts": ["redis://127.0.0.1:6379/0"], "prefix": "asgi.db0."}
    assert values["mqtt"] == "mqtt://127.0.0.1:1883"


def test_it_gives_each_redis_database_channels_of_its_own():
    from config.env import ImproperSetting, redis_database

    assert redis_database("redis://127.0.0.1:6379/3") == 3
    assert redis_database("redis://127.0.0.1:6379?db=5") == 5
    assert redis_database("redis://127.0.0.1:6379") == 0
    with pytest.raises(ImproperSetting, match="must be a number"):
        redis_database("redis://127.0.0.1:6379/cards")


def test_it_refuses_to_start_without_a_secret_key_unless_debug(tmp_path):
    result = load_settings(tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert loaded(load_settings(tmp_path, DEBUG="1"))["debug"] is True


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://root@localhost/x", "DATABASE_URL must start with one of"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with one of redis, rediss://"),
        ("MQTT_URL", "mqtt://broker:notaport", "MQTT_URL='mqtt://broker:notaport' has an invalid port"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE='Mars/Olympus' is not an IANA time zone"),
    ],
)
def test_it_fails_loudly_on_a_bad_value(tmp_path, variable, value, message):
    result = load_settings(tmp_path, SECRET_KEY="x", **{variable: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_it_reads_allowed_hosts_and_time_zone(tmp_path):
    values = loaded(
        load_settings(tmp_path, SECRET_KEY="x", ALLOWED_HOSTS="a.example, b.example", TIME_ZONE="Europe/Brussels")
    )
    assert values["hosts"] == ["a.example", "b.example"]
    assert values["tz"] == "Europe/Brussels"


@pytest.mark.django_db
def test_it_talks_to_the_configured_database_for_real(settings):
    """The suite's own database: SQLite by default, PostgreSQL when CI sets DATABASE_URL."""
    from django.db import connection

    expected = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_it_reaches_postgres_over_a_real_connection():
    url = require_service("DATABASE_URL", 5432)
    import psycopg

    with psycopg.connect(url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def check_deploy(tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", "VAR_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_check_deploy_with_debug_off(tmp_path):
    result = check_deploy(tmp_path, DEBUG="0", SECRET_KEY=DEPLOY_SECRET_KEY, ALLOWED_HOSTS="dashboard.example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_it_defaults_to_https_without_debug_and_to_plain_http_with_it(tmp_path):
    production = loaded(load_settings(tmp_path, SECRET_KEY="x"))["https"]
    assert production == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    development = loaded(load_settings(tmp_path, DEBUG="1"))["https"]
    assert not any(development[name] for name in development)


def test_it_reads_the_https_settings_from_the_environment(tmp_path):
    values = loaded(
        load_settings(
            tmp_path,
            SECRET_KEY="x",
            SECURE_SSL_REDIRECT="0",
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="no",
            SECURE_HSTS_SECONDS="3600",
            SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
            SECURE_HSTS_PRELOAD="yes",
            SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
        )
    )["https"]
    assert values == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SECURE_SSL_REDIRECT", "maybe", "SECURE_SSL_REDIRECT='maybe' is not a boolean"),
        ("SESSION_COOKIE_SECURE", "2", "SESSION_COOKIE_SECURE='2' is not a boolean"),
        ("CSRF_COOKIE_SECURE", "secure", "CSRF_COOKIE_SECURE='secure' is not a boolean"),
        ("SECURE_HSTS_SECONDS", "a year", "SECURE_HSTS_SECONDS='a year' is not a whole number of seconds"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS='-1' is not a whole number of seconds"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "all", "SECURE_HSTS_INCLUDE_SUBDOMAINS='all' is not a boolean"),
        ("SECURE_HSTS_PRELOAD", "please", "SECURE_HSTS_PRELOAD='please' is not a boolean"),
        (
            "SECURE_PROXY_SSL_HEADER",
            "https",
            "SECURE_PROXY_SSL_HEADER='https' must look like 'X-Forwarded-Proto: https'",
        ),
    ],
)
def test_it_fails_loudly_on_a_bad_https_value(tmp_path, variable, value, message):
    result = load_settings(tmp_path, SECRET_KEY="x", **{variable: value})
    assert result.returncode != 0
    assert message in result.stderr
