"""Settings from environment variables, failing loudly on bad values.

Kept free of Django imports so settings can use it before Django is set up.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit


class ImproperSetting(ValueError):
    """An environment variable holds a value the server cannot run with."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperSetting(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, minimum: int = 1, *, what: str = "") -> int:
    """A whole number of at least ``minimum``; ``what`` names its unit in the error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        unit = f" {what}" if what else ""
        raise ImproperSetting(f"{name}={raw!r} is not a whole number of{unit} ({minimum} or more)")
    return value


def env_seconds(name: str, default: int) -> int:
    return env_int(name, default, minimum=0, what="seconds")


def env_proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """``X-Forwarded-Proto: https`` (the header a TLS-terminating proxy sets) as Django wants it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, sep, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not sep or not header or not value or " " in header:
        raise ImproperSetting(f"{name}={raw!r} must look like 'X-Forwarded-Proto: https'")
    return "HTTP_" + header.upper().replace("-", "_"), value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, schemes: set[str]) -> str | None:
    """The URL in ``name``, or None when unset; refuses schemes we cannot serve."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperSetting(f"{name} must start with one of {allowed}://, got {raw!r}")
    if parts.scheme not in {"sqlite"} and not parts.hostname:
        raise ImproperSetting(f"{name}={raw!r} has no host name")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        raise ImproperSetting(f"{name}={raw!r} has an invalid port") from exc
    return raw


def redis_database(url: str) -> int:
    """The database number of a ``redis://`` URL: its path (``/1``), else ``?db=``, else 0."""
    parts = urlsplit(url)
    raw = parts.path.strip("/") or dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db", "0")
    if not raw.isdigit() or int(raw) > 65_535:
        raise ImproperSetting(f"{url!r}: the Redis database must be a number, got {raw!r}")
    return int(raw)


def env_timezone(name: str, default: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    value = os.environ.get(name, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperSetting(f"{name}={value!r} is not an IANA time zone such as Europe/Brussels") from exc
    return value
