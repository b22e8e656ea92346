"""Forms for the dashboard's GET parameters and relay buttons."""

from __future__ import annotations

from datetime import date

from django import forms

from dashboard.usage import PERIODS
from metering.commands import TIMED_MINUTES


class RelayForm(forms.Form):
    """One relay button: ``on``, ``off``, or a timed switch-on of ``5``/``15``/``30``/``60`` minutes."""

    command = forms.ChoiceField(
        choices=[("on", "On"), ("off", "Off"), *((str(m), f"On for {m} min") for m in TIMED_MINUTES)]
    )

    def switch(self) -> tuple[bool, int | None]:
        """(on, minutes) for :func:`metering.commands.request_relay`."""
        command = self.cleaned_data["command"]
        if command in ("on", "off"):
            return command == "on", None
        return True, int(command)


class UsageForm(forms.Form):
    """``period`` and ``date`` of the usage card; anything missing or malformed means "today"."""

    period = forms.ChoiceField(choices=[(p, p.title()) for p in PERIODS], required=False)
    date = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def period_and_date(self, today: date) -> tuple[str, date]:
        self.is_valid()  # keeps the fields that are valid in cleaned_data
        return self.cleaned_data.get("period") or "day", self.cleaned_data.get("date") or today
