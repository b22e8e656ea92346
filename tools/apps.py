from django.apps import AppConfig


class ToolsConfig(AppConfig):
    """Benchmarks and the simulated house: tools around the server, not part of it.

    An app only so that ``manage.py simulate`` (bin/run) lives here; it has no models."""

    name = "tools"
