"""Installations and their modules (SPEC section 2), device credentials and events.

The manual's installation rules live in :mod:`devices.rules` and are applied to whole
installations by :mod:`devices.installation` (which imports these models, never the other way
round): the admin's forms, the import command, the installation check's fixes and any API that
edits rows call :func:`devices.installation.clean_with_rules` or the import.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from devices import catalogue
from devices.rules import timezone_names


def _choices(mapping: dict[str, str]) -> list[tuple[str, str]]:
    return list(mapping.items())


def validate_timezone(value: str) -> None:
    if value not in timezone_names():
        raise ValidationError(f"{value!r} is not a time zone name such as Europe/Brussels.")


# Support staff: may see and act on every location, including those they are no member of
# (docs/security.md, "Access"). Superusers have it implicitly; ``is_staff`` alone (the admin
# site) does not grant it.
SUPPORT_PERMISSION = "devices.support_all_locations"
SUPPORT = "support"


def supports_all_locations(user) -> bool:
    """Whether ``user`` (active, signed in) holds :data:`SUPPORT_PERMISSION`."""
    return bool(user.is_authenticated and user.has_perm(SUPPORT_PERMISSION))


def support_note(user) -> str:
    """How an event names support staff acting on a location they are no member of."""
    return f"{user.get_username()} (support staff, not a member)"


class LocationQuerySet(models.QuerySet):
    def visible_to(self, user) -> LocationQuerySet:
        """Locations ``user`` may see: support staff see all, others those they are a member of."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if supports_all_locations(user):
            return self
        return self.filter(memberships__user=user).distinct()


class Location(models.Model):
    name = models.CharField(max_length=120)
    address = models.CharField(max_length=250, blank=True)
    timezone = models.CharField(max_length=64, default="Europe/Brussels", validators=[validate_timezone])
    topology = models.CharField(max_length=10, choices=_choices(catalogue.TOPOLOGIES))
    frequency_hz = models.PositiveSmallIntegerField(
        "nominal frequency (Hz)", choices=[(f, f"{f} Hz") for f in catalogue.FREQUENCIES_HZ], default=50
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Outgoing integrations (docs/integrations.md), off by default. The UUID names the location
    # on MQTT (servicelocation/<uuid>/..., Home Assistant ids) without showing its database id.
    uuid = models.UUIDField("MQTT id", default=uuid.uuid4, unique=True, editable=False)
    smappee_mqtt = models.BooleanField(
        "Smappee-compatible MQTT",
        default=False,
        help_text="Publish live values as a Smappee gateway's local broker does.",
    )
    home_assistant = models.BooleanField(
        "Home Assistant discovery", default=False, help_text="Announce sensors and relay switches to Home Assistant."
    )
    mqtt_broker_url = models.CharField(
        "MQTT broker URL",
        max_length=200,
        blank=True,
        help_text="mqtt://host:1883 or mqtts://host:8883 of the homeowner's broker; empty: the server's broker.",
    )
    mqtt_broker_username = models.CharField("MQTT broker username", max_length=128, blank=True)
    # Kept to connect with, never shown back (export and admin mask it).
    mqtt_broker_password = models.CharField("MQTT broker password", max_length=128, blank=True)

    objects = LocationQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        permissions = [("support_all_locations", "Can support every location")]

    def __str__(self) -> str:
        return self.name

    @property
    def zoneinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def publishes_integrations(self) -> bool:
        return self.smappee_mqtt or self.home_assistant

    def role_of(self, user) -> str | None:
        """The user's role here ("owner", "viewer", "installer"); "support" for a user with
        :data:`SUPPORT_PERMISSION` who is no member; else None."""
        if not user.is_authenticated or not user.is_active:
            return None
        membership = self.memberships.filter(user=user).first()
        if membership:
            return membership.role
        return SUPPORT if supports_all_locations(user) else None

    # Who may do what here. Each takes the user's role when the caller has it already
    # (:meth:`role_of` is one query), else looks it up.

    def may_switch(self, user, role: str | None = None) -> bool:
        """Owners and support staff switch relays; viewers and installers only see them."""
        role = self.role_of(user) if role is None else role
        return role == Membership.OWNER or bool(role and supports_all_locations(user))

    def may_view_check(self, user, role: str | None = None) -> bool:
        """The installer, the owner (read-only) and support staff see the installation check and its reports."""
        role = self.role_of(user) if role is None else role
        return role in (Membership.INSTALLER, Membership.OWNER) or bool(role and supports_all_locations(user))

    def may_fix(self, user, role: str | None = None) -> bool:
        """The installer and support staff change the installation from the check and sign it off."""
        role = self.role_of(user) if role is None else role
        return role == Membership.INSTALLER or bool(role and supports_all_locations(user))


class Membership(models.Model):
    OWNER, VIEWER, INSTALLER = "owner", "viewer", "installer"
    ROLES = [(OWNER, "Owner"), (VIEWER, "Viewer"), (INSTALLER, "Installer")]

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLES, default=VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["location", "user"], name="one_role_per_user_and_location")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.location}"


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast unsalted hash is enough to keep
    # them unreadable at rest while allowing an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


class Gateway(models.Model):
    location = models.OneToOneField(Location, on_delete=models.CASCADE, related_name="gateway")
    model = models.CharField(max_length=16, choices=_choices(catalogue.GATEWAY_MODELS))
    serial = models.CharField(max_length=64, unique=True)
    connectivity = models.CharField(max_length=10, choices=_choices(catalogue.CONNECTIVITY), default="ethernet")
    wifi_ssid = models.CharField("Wi-Fi SSID", max_length=32, blank=True)
    wifi_password = models.CharField("Wi-Fi password", max_length=64, blank=True)
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    token_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.get_model_display()} {self.serial}"

    def rotate_token(self) -> str:
        """Issue a new ingest token, invalidating the old one. Returns it once; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_created_at = timezone.now()
        self.save(update_fields=["token_hash", "token_created_at"])
        return token

    def revoke_token(self) -> None:
        self.token_hash = ""
        self.save(update_fields=["token_hash"])

    @classmethod
    def for_token(cls, token: str) -> Gateway | None:
        if not token:
            return None
        return cls.objects.select_related("location").filter(token_hash=hash_token(token)).first()


class PowerBox(models.Model):
    location = models.OneToOneField(Location, on_delete=models.CASCADE, related_name="powerbox")
    serial = models.CharField(max_length=64, unique=True)
    bus_a_length_m = models.FloatField("CT bus (A) length (m)", null=True, blank=True)
    bus_b_length_m = models.FloatField("gateway bus (B) length (m)", null=True, blank=True)

    class Meta:
        verbose_name = "Power Box"
        verbose_name_plural = "Power Boxes"

    def __str__(self) -> str:
        return f"Power Box {self.serial}"


class CtModule(models.Model):
    """A module on bus A: a CT Hub (inputs A–D) or a Solid Core 3-Phase CT (inputs A–C)."""

    HUB, SOLID_CORE = "hub", "solid-core"
    KINDS = [(HUB, "CT Hub (MOD-IAC-1)"), (SOLID_CORE, "Solid Core 3-Phase CT (MOD-IAC-2)")]

    powerbox = models.ForeignKey(PowerBox, on_delete=models.CASCADE, related_name="ct_modules")
    kind = models.CharField(max_length=10, choices=KINDS, default=HUB)
    serial = models.CharField(max_length=64, unique=True)
    position = models.PositiveSmallIntegerField("position on bus A", default=1)

    class Meta:
        ordering = ["position", "pk"]
        verbose_name = "CT module"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.serial}"

    @property
    def input_letters(self) -> tuple[str, ...]:
        return catalogue.CT_HUB_INPUTS if self.kind == self.HUB else catalogue.SOLID_CORE_INPUTS


class CtInput(models.Model):
    module = models.ForeignKey(CtModule, on_delete=models.CASCADE, related_name="inputs")
    letter = models.CharField(max_length=1)
    ct_type = models.CharField("CT type", max_length=24, choices=[(t, t) for t in catalogue.CT_TYPES])

    class Meta:
        ordering = ["module__position", "letter"]
        constraints = [models.UniqueConstraint(fields=["module", "letter"], name="one_ct_per_module_input")]
        verbose_name = "CT input"

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        """The CT reference used in installation files and frames: ``<module serial>/<letter>``."""
        return f"{self.module.serial}/{self.letter}"

    @property
    def rating_a(self) -> float:
        return catalogue.CT_TYPES[self.ct_type]


class InputModule(models.Model):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="input_modules")
    serial = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["serial"]
        verbose_name = "Input module"

    def __str__(self) -> str:
        return f"Input module {self.serial}"


class DigitalInput(models.Model):
    module = models.ForeignKey(InputModule, on_delete=models.CASCADE, related_name="inputs")
    number = models.CharField(max_length=1)
    name = models.CharField(max_length=80)
    mode = models.CharField(max_length=8, choices=_choices(catalogue.INPUT_MODES), default="pulse")
    unit = models.CharField(max_length=16, blank=True, help_text="Unit of a pulse counter, e.g. m3, l, kWh.")
    pulses_per_unit = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["module__serial", "number"]
        constraints = [models.UniqueConstraint(fields=["module", "number"], name="one_input_per_module_number")]

    def __str__(self) -> str:
        return f"{self.ref} {self.name}"

    @property
    def ref(self) -> str:
        return f"{self.module.serial}/{self.number}"


class OutputModule(models.Model):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="output_modules")
    serial = models.CharField(max_length=64, unique=True)
    mode = models.CharField(max_length=10, choices=_choices(catalogue.OUTPUT_MODES), default="separate")

    class Meta:
        ordering = ["serial"]
        verbose_name = "Output module"

    def __str__(self) -> str:
        return f"Output module {self.serial}"


class Relay(models.Model):
    module = models.ForeignKey(OutputModule, on_delete=models.CASCADE, related_name="relays")
    number = models.CharField(max_length=1)
    name = models.CharField(max_length=80)
    is_on = models.BooleanField(default=False, editable=False)
    changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    off_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="End of a timed switch-on.")

    class Meta:
        ordering = ["module__serial", "number"]
        constraints = [models.UniqueConstraint(fields=["module", "number"], name="one_relay_per_module_number")]

    def __str__(self) -> str:
        return f"{self.ref} {self.name}"

    @property
    def ref(self) -> str:
        return f"{self.module.serial}/{self.number}"


class Load(models.Model):
    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="loads")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=12, choices=_choices(catalogue.LOAD_KINDS))
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["location", "name"], name="load_names_unique_per_location")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class LoadCt(models.Model):
    """One CT of a load: which input, on which phase, in which direction."""

    load = models.ForeignKey(Load, on_delete=models.CASCADE, related_name="cts")
    ct_input = models.OneToOneField(CtInput, on_delete=models.CASCADE, related_name="load_ct")
    phase = models.CharField(max_length=2, choices=[(p, p) for p in ("L1", "L2", "L3")])
    reversed = models.BooleanField(
        default=False, help_text="The manual advises against relying on this: turn the clamp instead."
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["load__position", "position", "pk"]
        verbose_name = "load CT"

    def __str__(self) -> str:
        return f"{self.ct_input.ref} → {self.load.name} {self.phase}"


class Event(models.Model):
    RELAY = "relay"
    INPUT_CHANGED = "input"
    PULSES_RESET = "pulses_reset"
    DATA_GAP = "data_gap"
    GATEWAY_OFFLINE = "offline"
    GATEWAY_ONLINE = "online"
    INVALID_FRAME = "invalid_frame"
    VALIDATION = "validation"
    CONFIGURATION = "configuration"
    DIAGNOSIS = "diagnosis"
    KINDS = [
        (RELAY, "Relay switched"),
        (INPUT_CHANGED, "Input changed"),
        (PULSES_RESET, "Pulse counter reset"),
        (DATA_GAP, "Data gap"),
        (GATEWAY_OFFLINE, "Gateway offline"),
        (GATEWAY_ONLINE, "Gateway online"),
        (INVALID_FRAME, "Invalid frame"),
        (VALIDATION, "Validation finding"),
        (CONFIGURATION, "Configuration changed"),
        (DIAGNOSIS, "Diagnosis"),
    ]

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="events")
    time = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16, choices=KINDS)
    module = models.CharField(max_length=80, blank=True, help_text="Serial or reference of the module concerned.")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-pk"]
        indexes = [models.Index(fields=["location", "-time"], name="event_location_time")]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.get_kind_display()}: {self.message}"


class CommissioningReport(models.Model):
    """An installer's sign-off of an installation: what was installed, what the check said, what was measured.

    A snapshot: ``installation`` is the installation file (SPEC 5.1) at sign-off, ``verdicts``
    the validation's findings (SPEC 5.3 ``validation``: every verdict, ``ok`` included) and
    ``live`` the live values (SPEC 5.3) the installer saw. The report page renders these, never
    the location's current state, so later changes do not rewrite what was signed.
    """

    location = models.ForeignKey(Location, on_delete=models.CASCADE, related_name="commissioning_reports")
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    signed_by_name = models.CharField(max_length=150, help_text="Who signed off, kept if the account goes.")
    signed_at = models.DateTimeField(default=timezone.now)
    notes = models.TextField(blank=True)
    installation = models.JSONField(default=dict, help_text="The installation file at sign-off (SPEC 5.1).")
    verdicts = models.JSONField(default=list, blank=True, help_text="Every validation verdict at sign-off.")
    live = models.JSONField(null=True, blank=True, help_text="The live values at sign-off (SPEC 5.3).")

    class Meta:
        ordering = ["-signed_at", "-pk"]
        verbose_name = "commissioning report"

    def __str__(self) -> str:
        return f"{self.location} signed off by {self.signed_by_name} at {self.signed_at:%Y-%m-%d %H:%M}"

    # Verdicts that are not problems (as metering.validation.NOT_A_PROBLEM; devices does not import metering).
    NOT_A_PROBLEM = frozenset({"ok", "low_current"})

    @property
    def open_findings(self) -> list[dict]:
        """The verdicts that needed the installer's attention when the installation was signed off."""
        return [v for v in self.verdicts if v.get("kind") not in self.NOT_A_PROBLEM]
