"""``manage.py export_installation LOCATION_ID``: print a location's installation file."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.installation import export_installation
from devices.models import Location


class Command(BaseCommand):
    help = "Print the installation file (JSON, see SPEC 5.1) of a location; import_installation reads it back."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("location_id", type=int, help="id of the location")

    def handle(self, *args, **options) -> None:
        location = Location.objects.filter(pk=options["location_id"]).first()
        if location is None:
            raise CommandError(f"No location with id {options['location_id']}.")
        self.stdout.write(json.dumps(export_installation(location), indent=2, ensure_ascii=False))
