"""Settings for Infinity Dashboard.

Defaults are the embedded setup (SQLite under var/, in-memory channel layer);
production sets DATABASE_URL, REDIS_URL and MQTT_URL.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from config.env import (
    ImproperSetting,
    env_bool,
    env_int,
    env_list,
    env_proxy_ssl_header,
    env_seconds,
    env_timezone,
    env_url,
    redis_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))

DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperSetting("SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for development)")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])


# HTTPS (docs/security.md, "Deployment"): on unless DEBUG, each can be set from the environment.
# Behind a proxy that terminates TLS, set SECURE_PROXY_SSL_HEADER to the header it sets (and
# make sure it overwrites that header from clients), or SSL redirects loop.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env_seconds("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
# Sub-domains and preloading commit more than this server: off unless asked for. check --deploy
# would warn about them (W005, W021) for as long as they are off; that is this decision.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
SILENCED_SYSTEM_CHECKS = [
    check
    for check, on in (("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS), ("security.W021", SECURE_HSTS_PRELOAD))
    if not on
]

INSTALLED_APPS = [
    "config",  # first: its runserver (daphne's, with larger request-body pieces) wins
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "ninja",  # the REST API's Swagger UI assets as static files (else django-ninja loads them from a CDN)
    "devices",
    "metering",
    "dashboard",
    "tools",  # benchmarks and the simulator (manage.py simulate)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the server itself (collected into STATIC_ROOT by `collectstatic`; with
    # DEBUG straight from static/), so a deployment needs no other server for them.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

DATABASE_URL = env_url("DATABASE_URL", {"postgres", "postgresql", "sqlite"})
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "infinity.sqlite3",
            # Keep connections: ingest runs each frame through database_sync_to_async, which
            # would otherwise reopen the database (and rerun the PRAGMAs) for every frame.
            "CONN_MAX_AGE": 600,
            # Ingest writes from several threads; wait for the lock instead of failing.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                # WAL lets pages read while ingest writes; NORMAL sync is durable across app crashes.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

REDIS_URL = env_url("REDIS_URL", {"redis", "rediss"})
if REDIS_URL:
    # Redis pub/sub (tools.bench_layers, docs/deploy.md "Fan-out"): a card is one PUBLISH to its
    # group's channel, and each web process reads every card of its groups from one subscribed
    # connection and hands it to its sockets in process: no round trip per delivered card (the
    # core RedisChannelLayer pops each card with its own BZPOPMIN: 2-6 times the web process's
    # CPU per card, and it fell behind and dropped cards at 1,400-2,200 cards/s where this
    # delivered 7,100-7,300/s without a loss). Group memberships live in the web process, which subscribes again by
    # itself after Redis restarts (the core layer's memberships were lost with an unpersisted
    # Redis, and they expire after a day). Cards published while a web process is disconnected
    # are lost, as are those of a process that falls 32 MB behind (Redis's pub/sub output
    # buffer limit): the next card supersedes them.
    # Pub/sub channels are not scoped by database number: the prefix carries it, so that
    # deployments (and test runs) on other databases of one Redis do not receive each other's cards.
    # redis-py 8's defaults (django/channels_redis#422: a 5 s socket timeout, pools of at most
    # 100 connections that raise) broke the core layer's blocking 5 s BZPOPMIN and its
    # connection per group_add; this layer polls its subscription every 0.1 s and publishes
    # over one connection at a time, so they stay as they are.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"asgi.db{redis_database(REDIS_URL)}."},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "config.layers.InMemoryChannelLayer"}}

# Pushes an ingest thread hands to the event loop without waiting, at most, before it waits for
# one (dashboard.broadcast.send_group). In memory a finished group_send is a delivered one. On
# Redis it only means Redis has the card: this process's own sockets still get it when the loop
# reads it back from its subscription, so each thread waits for its own send: ingest slows down
# with the loop instead of cards arriving seconds late (tools.bench_push measured 8 in flight
# leaving them 10-15 s behind on the core Redis layer).
CARD_SENDS_IN_FLIGHT = 1 if REDIS_URL else 8

# Latest live values are shared through the cache: Redis when configured, else this process.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Several entries per location (live values, card totals): the default 300 entries would
    # cull live values of installations with more than ~100 locations.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "infinity",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

MQTT_URL = env_url("MQTT_URL", {"mqtt", "mqtts"})

# Threads that store frames (metering.ingest.threads.on_ingest_threads). SQLite lets one writer in at a time
# and makes another wait in growing sleeps (its busy handler: 1, 2, 5, 10 ms...), so one thread;
# on PostgreSQL the commits of different Power Boxes overlap.
INGEST_THREADS = 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 2

# The ingest stream (metering.ingest.stream, docs/deploy.md). With Redis, web processes check a frame
# and hand it to the `manage.py run_ingest` workers, which meter and store it and render the
# cards; without (the embedded default), the web process does it all itself, on the same code
# path. INGEST_STREAM_URL defaults to REDIS_URL; set it empty to keep metering in the web process.
INGEST_STREAM_URL = (
    env_url("INGEST_STREAM_URL", {"redis", "rediss"}) if "INGEST_STREAM_URL" in os.environ else REDIS_URL
)
INGEST_SHARDS = env_int("INGEST_SHARDS", 16)
INGEST_PREFIX = os.environ.get("INGEST_PREFIX", "ingest")  # of the stream's Redis keys
INGEST_REPLY_TIMEOUT_S = env_seconds("INGEST_REPLY_TIMEOUT_S", 10)  # then 503: the device sends again
if INGEST_STREAM_URL:
    # The ingest threads of a web process then only check frames and wait for the workers'
    # answers: mostly waiting, so more of them (each keeps a database connection).
    INGEST_THREADS = 16

# Sample frames are large (a 1 s, 31-channel JSON frame is about 2 MB); ingest enforces its own limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # empty until `collectstatic`; WhiteNoise reads it at start

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"  # one-time tokens never sit in a cookie
