"""The one validation of an automation: :class:`AutomationForm`, for the page and the API.

Use it as ``AutomationForm(data, location=location, instance=automation_or_None)``; ``is_valid()``
applies the field bounds, the choices limited to the location's relays, loads and inputs, and
:meth:`metering.automations.models.Automation.clean`; ``errors`` names each refused field with
its reason, and nothing is stored unless ``save()`` is called on a valid form.
"""

from __future__ import annotations

from django import forms

from devices.models import DigitalInput, Load, Location, Relay
from metering.automations.models import Automation
from metering.relays import TIMED_MINUTES

FIELDS = [
    "name",
    "enabled",
    "quantity",
    "load",
    "input",
    "direction",
    "threshold",
    "release",
    "duration_s",
    "hours_from",
    "hours_until",
    "relay",
    "action",
    "on_minutes",
    "revert",
    "min_on_minutes",
    "min_off_minutes",
    "may_override_manual",
    "manual_window_minutes",
]


class AutomationForm(forms.ModelForm):
    on_minutes = forms.TypedChoiceField(
        label="for (min)",
        choices=[("", "until switched off"), *((m, f"{m} min") for m in TIMED_MINUTES)],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="Switching on only: for a while, or until something switches it off.",
    )

    class Meta:
        model = Automation
        fields = FIELDS
        # The unit of a threshold follows the quantity; the labels name every choice's.
        labels = {
            "quantity": "watch",
            "threshold": "threshold (W, A, or the input's unit per hour)",
            "release": "release threshold (same unit)",
        }
        widgets = {
            "threshold": forms.NumberInput(attrs={"step": "any"}),
            "release": forms.NumberInput(attrs={"step": "any"}),
            "duration_s": forms.NumberInput(attrs={"min": 0, "step": 1}),
            "hours_from": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "hours_until": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "min_on_minutes": forms.NumberInput(attrs={"min": 0, "step": 1}),
            "min_off_minutes": forms.NumberInput(attrs={"min": 0, "step": 1}),
            "manual_window_minutes": forms.NumberInput(attrs={"min": 0, "step": 1}),
        }

    def __init__(self, *args, location: Location, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.location = location
        self.instance.location = location
        self.fields["relay"].queryset = Relay.objects.filter(module__location=location).select_related("module")
        self.fields["relay"].empty_label = None
        self.fields["load"].queryset = Load.objects.filter(location=location)
        self.fields["input"].queryset = DigitalInput.objects.filter(module__location=location).select_related("module")
        self.fields["relay"].label_from_instance = lambda relay: f"{relay.name} ({relay.ref})"
        self.fields["input"].label_from_instance = lambda item: f"{item.name} ({item.ref})"
        self.fields["load"].label_from_instance = lambda load: load.name

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the automation a name.")
        clash = Automation.objects.filter(location=self.location, name=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("Another automation of this location has this name.")
        return name
