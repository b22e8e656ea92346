"""Test settings: the production settings with a development key and a throwaway database."""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

from config.settings import *  # noqa: E402,F403

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# HTTP ingest runs in the request's thread, where the test's transaction is.
INGEST_THREADS = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: threads of one test (ingest workers, MQTT) then wait on
    # SQLite's busy timeout as in production instead of failing with "table is locked".
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405

# The test client speaks plain HTTP: no redirect to HTTPS, no HSTS (tests/config/test_settings.py
# checks the production defaults).
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
# Transports meter in the test's own thread, also when REDIS_URL is set: the ingest stream and its
# workers are tested on their own (tests/metering/test_pipeline.py, test_multiprocess.py).
INGEST_STREAM_URL = None
