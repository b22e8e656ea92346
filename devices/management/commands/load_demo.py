"""``manage.py load_demo``: the demo house, a demo owner and an admin account, ready to explore.

For local demonstrations only: the accounts have well-known passwords (demo/demo, admin/admin).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from devices.installation import ImportResult, import_installation
from devices.models import Membership

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "demo_installation.json"


def load_demo() -> ImportResult:
    """Import the demo house (idempotent) and (re)set the demo accounts. Issues a new gateway token.

    Only the token's hash is stored, so each run issues a new token and returns it: the
    token printed by the latest run is the one the simulator must use.
    """
    doc = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
    User = get_user_model()
    with transaction.atomic():
        result = import_installation(doc, rotate_token=True)
        demo, _ = User.objects.get_or_create(username="demo", defaults={"first_name": "Demo"})
        demo.set_password("demo")
        demo.save()
        Membership.objects.update_or_create(location=result.location, user=demo, defaults={"role": Membership.OWNER})
        admin, _ = User.objects.get_or_create(username="admin")
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password("admin")
        admin.save()
    return result


class Command(BaseCommand):
    help = (
        "Load the demo house (devices/demo/demo_installation.json), a demo owner (demo/demo) and an admin "
        "(admin/admin). Safe to run again; each run issues a new gateway ingest token and prints it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help='end with one line {"location_id": N, "gateway_token": "..."}',
        )

    def handle(self, *args, **options) -> None:
        result = load_demo()
        location = result.location
        verb = "Created" if result.created else "Updated" if result.changed else "Loaded"
        self.stdout.write(f"{verb} the demo installation {location.name!r} (location id {location.pk}).")
        self.stdout.write("Sign in at /accounts/login/ as demo / demo (owner of the demo house).")
        self.stdout.write("Django admin: /admin/ as admin / admin.")
        self.stdout.write(
            self.style.WARNING("These accounts have well-known passwords: use them for local demos only.")
        )
        self.stdout.write(
            f"Ingest token of gateway {location.gateway.serial} (new on every run; only its hash is stored, "
            f"so the simulator must use this one): {result.gateway_token}"
        )
        if options["json"]:
            self.stdout.write(json.dumps({"location_id": location.pk, "gateway_token": result.gateway_token}))
