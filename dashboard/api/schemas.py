"""The API's request and response shapes; the OpenAPI description is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict

from dashboard.api.history import LEVELS


class ErrorOut(Schema):
    error: str = Field(description="What is wrong, for a person to read.")
    field: str | None = Field(None, description="The parameter, header or body field at fault, if one is.")


class LocationOut(Schema):
    id: int
    name: str
    address: str
    timezone: str = Field(description="IANA time zone; history ranges and rows are in this local time.")
    topology: str = Field(description="1P, 3P+N (star) or 3P (delta).")
    frequency_hz: int
    role: str = Field(description="Your role here: owner, viewer, installer, or support (staff, no member).")


class LoadOut(Schema):
    id: int
    name: str
    kind: str


class InputOut(Schema):
    id: int
    ref: str = Field(description="'<module serial>/<input number>'.")
    name: str
    mode: str
    unit: str


class RelayOut(Schema):
    id: int
    ref: str = Field(description="'<output module serial>/<output number>'.")
    name: str
    is_on: bool = Field(description="The state the device last acknowledged.")
    changed_at: datetime | None
    off_at: datetime | None = Field(description="End of a timed switch-on.")


class GatewayOut(Schema):
    model: str
    serial: str
    last_seen_at: datetime | None


class LocationDetailOut(LocationOut):
    gateway: GatewayOut | None
    loads: list[LoadOut]
    inputs: list[InputOut]
    relays: list[RelayOut]
    may_switch_relays: bool


class LiveValuesOut(Schema):
    """The latest live values (SPEC 5.3), exactly as the dashboard's live card reads them."""

    model_config = ConfigDict(extra="allow")

    location: int
    t: float | None = Field(description="Unix time of the newest frame; null before the first.")
    topology: str
    frequency: float | None
    loads: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    checks: list[dict[str, Any]]


class HistoryRowOut(Schema):
    start: str = Field(description="Local start of the bucket, ISO 8601 with its UTC offset.")
    consumption_wh: float | None
    solar_wh: float | None
    grid_import_wh: float | None
    grid_export_wh: float | None
    battery_charge_wh: float | None
    battery_discharge_wh: float | None
    self_consumption_wh: float | None
    self_supplied_wh: float | None
    always_on_w: float | None = Field(description="Lowest average consumption power of a well-covered 5-minute bucket.")
    seconds: float | None = Field(description="Seconds of samples behind the row (300 per full 5-minute bucket).")


class HistoryOut(Schema):
    location: int
    timezone: str
    level: Literal[LEVELS]
    start: str = Field(alias="from", description="Local start of the range (inclusive).")
    end: str = Field(alias="to", description="Local end of the range (exclusive).")
    rows: list[HistoryRowOut]


class EventOut(Schema):
    id: int
    time: datetime
    kind: str
    module: str
    message: str
    data: dict[str, Any]


class Page(Schema):
    count: int = Field(description="Items in all pages.")
    page: int
    pages: int
    page_size: int


class EventPageOut(Page):
    items: list[EventOut] = Field(description="Newest first.")


class RelayCommandOut(Schema):
    id: int
    relay_id: int
    relay: str = Field(description="The relay's ref.")
    on: bool
    until: datetime | None = Field(description="A timed switch-on ends at this time.")
    status: str = Field(description="pending until the device acknowledges, then done.")
    requested_at: datetime
    requested_by: str | None
    acknowledged_at: datetime | None


class RelayCommandPageOut(Page):
    items: list[RelayCommandOut] = Field(description="Newest first.")


class SwitchIn(Schema):
    on: bool = Field(description="true to switch on, false to switch off.")
    minutes: int | None = Field(
        None, description="Switch on for this many minutes only (5, 15, 30 or 60), as the dashboard's timed buttons."
    )
