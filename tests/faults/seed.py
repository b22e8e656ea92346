"""Prepare a fault test's installation in the stack's database: ``python -m tests.faults.seed``.

Run as a process of its own on the stack's ``DATABASE_URL`` (the fault tests do not use the
test session's database: their PostgreSQL is a private one they restart). ``--migrate``
migrates first; each ``--location PREFIX`` creates a test house (tests.factories.make_location)
with a member ``owner-PREFIX`` (password ``pw-PREFIX``) and a signed-in session. Prints one JSON line:
``{PREFIX: {"location_id", "token", "user", "password", "session"}}``.
"""

from __future__ import annotations

import argparse
import os

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--migrate", action="store_true")
    parser.add_argument("--location", action="append", default=[])
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()

    import orjson
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from tests.factories import make_location

    if args.migrate:
        call_command("migrate", interactive=False, verbosity=0)
    made = {}
    for prefix in args.location:
        user = get_user_model().objects.create_user(f"owner-{prefix}", password=f"pw-{prefix}")
        location, token = make_location(name=f"House {prefix}", serial_prefix=prefix, members={user: "owner"})
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        made[prefix] = {
            "location_id": location.pk,
            "token": token,
            "user": user.username,
            "password": f"pw-{prefix}",
            "session": session.session_key,
        }
    print(orjson.dumps(made).decode())


if __name__ == "__main__":
    main()
