"""``manage.py rebuild_rollups [LOCATION_ID ...]``: rebuild hour, day and month rollups."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from devices.models import Location
from metering.rollups import rebuild_all


class Command(BaseCommand):
    help = (
        "Rebuild the hour, day and month rollups of the usage history from the 5-minute buckets, "
        "for the given locations or all of them (docs/history.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("location_ids", nargs="*", type=int, metavar="LOCATION_ID")

    def handle(self, *args, location_ids: list[int], **options) -> None:
        if location_ids:
            missing = sorted(
                set(location_ids) - set(Location.objects.filter(pk__in=location_ids).values_list("pk", flat=True))
            )
            if missing:
                raise CommandError(f"no location with id {', '.join(map(str, missing))}")
        began = time.perf_counter()
        hours = rebuild_all(location_ids or None)
        self.stdout.write(
            f"rebuilt the rollups of {len(hours)} location(s): {sum(hours.values())} hour rows "
            f"in {time.perf_counter() - began:.1f} s"
        )
