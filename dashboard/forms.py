"""Forms for the dashboard's GET parameters and relay buttons."""

from __future__ import annotations

from datetime import date

from django import forms

from dashboard.usage import FIRST_DAY, PERIODS, last_day
from metering.relays import TIMED_MINUTES


class RelayForm(forms.Form):
    """One relay button: ``on``, ``off``, or a timed switch-on of ``5``/``15``/``30``/``60`` minutes."""

    command = forms.ChoiceField(
        choices=[("on", "On"), ("off", "Off"), *((str(m), f"On for {m} min") for m in TIMED_MINUTES)]
    )

    def switch(self) -> tuple[bool, int | None]:
        """(on, minutes) for :func:`metering.relays.request_relay`."""
        command = self.cleaned_data["command"]
        if command in ("on", "off"):
            return command == "on", None
        return True, int(command)


class DateOutOfRange(ValueError):
    """A well-formed usage date the card does not show; the message says which dates it does."""


class UsageForm(forms.Form):
    """``period`` and ``date`` of the usage card.

    Anything missing or malformed means "today" (a link that lost a parameter still shows
    something); a real date outside :data:`dashboard.usage.FIRST_DAY` .. a year after ``today``
    is refused (:class:`DateOutOfRange`, a 400 in the views).
    """

    period = forms.ChoiceField(choices=[(p, p.title()) for p in PERIODS], required=False)
    date = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def __init__(self, data, *, today: date) -> None:
        super().__init__(data)
        self.today = today

    def clean_date(self) -> date | None:
        value = self.cleaned_data.get("date")
        if value is not None and not FIRST_DAY <= value <= last_day(self.today):
            raise forms.ValidationError(
                "Usage is shown for dates from %(first)s to %(last)s, not %(value)s.",
                code="out_of_range",
                params={
                    "first": FIRST_DAY.isoformat(),
                    "last": last_day(self.today).isoformat(),
                    "value": value.isoformat(),
                },
            )
        return value

    def period_and_date(self) -> tuple[str, date]:
        """The period and the day to show; raises :class:`DateOutOfRange`."""
        self.is_valid()  # keeps the fields that are valid in cleaned_data
        if self.has_error("date", code="out_of_range"):
            raise DateOutOfRange(" ".join(self.errors["date"]))
        return self.cleaned_data.get("period") or "day", self.cleaned_data.get("date") or self.today
