from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from metering.ingest.watchdog import report_offline_gateways


class Command(BaseCommand):
    help = "Write a 'gateway offline' Event for every gateway silent for more than 30 s (loops until stopped)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--every", type=float, default=10.0, help="seconds between checks")
        parser.add_argument("--once", action="store_true", help="check once and exit")

    def handle(self, *args, every: float, once: bool, **options) -> None:
        while True:
            close_old_connections()
            for event in report_offline_gateways():
                self.stdout.write(f"{event.location}: {event.message}")
            if once:
                return
            time.sleep(every)
