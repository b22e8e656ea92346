from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering and history"

    def ready(self) -> None:
        # Connect the signals: installed forgets cached installations, rollups rebuilds a
        # location's history rollups when its time zone changes; automations run on live values;
        # the integrations publish them (and relay changes, gateway events) to MQTT.
        from metering import installed, rollups  # noqa: F401
        from metering.automations import runner
        from metering.integrations import publisher

        runner.connect_signals()
        publisher.connect_signals()
