from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from metering.ingest.mqtt import SHARE_GROUP, MqttIngest


class Command(BaseCommand):
    help = (
        "Ingest sample frames and relay acknowledgements from MQTT (MQTT_URL), as one worker of a shared subscription."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=None, help="broker URL (default: MQTT_URL)")
        parser.add_argument("--group", default=SHARE_GROUP, help="shared-subscription group of the workers")

    def handle(self, *args, url: str | None, group: str, **options) -> None:
        url = url or settings.MQTT_URL
        if not url:
            raise CommandError("set MQTT_URL (e.g. mqtt://127.0.0.1:1883) or pass --url")
        self.stdout.write(f"ingesting from {url} (shared group {group}); stop with Ctrl+C")
        worker = MqttIngest(url, group)
        try:
            worker.run_forever()
        except KeyboardInterrupt:
            worker.stop()
        except OSError as exc:
            raise CommandError(f"cannot reach the MQTT broker at {url}: {exc}") from exc
