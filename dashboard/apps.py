from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        from dashboard import access
        from dashboard.broadcast import connect_signals

        connect_signals()
        access.connect_signals()
