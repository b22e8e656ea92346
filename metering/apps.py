from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering and history"

    def ready(self) -> None:
        from metering import installed  # noqa: F401 - connects the cache-invalidating signals
