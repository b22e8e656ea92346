"""``manage.py simulate LOCATION_ID``: a simulated house streaming frames into a location.

The house is built from the location's installation (or ``--installation FILE``), optionally
writes ``--backfill DAYS`` of history first, then streams one frame per simulated second over
HTTP, WebSocket or MQTT with the gateway's token, applying the relay commands it receives.
The work is done by :func:`tools.simulator.stream.stream` and :func:`backfill_history`.

Like a Power Box, the simulator numbers its frames with a counter that carries on where the
server's stored numbering (``PowerBoxState.last_seq``) left off, and it never meters a second
twice: the frames start after what the server stores (and after the written history). Write the
token as ``--token=TOKEN`` (tokens are base64url and may start with ``-``) or set
``INFINITY_GATEWAY_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tools.simulator.house import House
from tools.simulator.stream import start_time, stream
from tools.simulator.transport import FatalTransportError, make_transport

BUCKET_S = 300
BUCKETS_PER_DAY = 288


def backfill_history(
    location, house: House, days: float, *, now: datetime | None = None, bar: Callable[[str], None] | None = None
) -> int:
    """Write ``days`` of simulated history ending ``now`` through ``metering.history.backfill``,
    drawing a text progress bar with ``bar`` (default: stderr). Returns the buckets written."""
    from metering.history import backfill

    bar = bar or _stderr
    end = history_end(now or datetime.now(UTC))
    total = int(days * BUCKETS_PER_DAY)
    rows = _with_progress(house.bucket_energy(end - timedelta(days=days), end), total, bar)
    written = backfill(location, rows, progress=lambda *args, **kwargs: None)
    bar("\n")
    return written


def history_end(now: datetime) -> datetime:
    """Where written history ends: whole buckets up to the current one, which the frames fill."""
    return datetime.fromtimestamp(now.timestamp() // BUCKET_S * BUCKET_S, UTC)


def stored_position(powerbox_serial: str) -> tuple[int | None, float | None]:
    """``(last_seq, last_end_t)`` the server stores for the Power Box, or ``(None, None)``
    when it has no frames from it (or there is no database to ask)."""
    from django.db import DatabaseError

    from metering.models import PowerBoxState

    try:
        row = PowerBoxState.objects.filter(powerbox__serial=powerbox_serial).values_list("last_seq", "last_end_t")
        return row.first() or (None, None)
    except DatabaseError:  # not migrated: nothing stored
        return None, None


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _with_progress(rows: Iterable, total: int, bar: Callable[[str], None]) -> Iterator:
    started = time.monotonic()
    count = 0
    for count, row in enumerate(rows, 1):
        if count % 96 == 0 or count == total:
            _draw(bar, count, total, started)
        yield row
    _draw(bar, count, max(total, count), started)


def _draw(bar: Callable[[str], None], done: int, total: int, started: float) -> None:
    width = 30
    share = done / total if total else 1.0
    filled = int(width * min(share, 1.0))
    bar(
        f"\rbackfill [{'#' * filled}{'.' * (width - filled)}] {share:4.0%} "
        f"{done}/{total} buckets, {time.monotonic() - started:.1f} s"
    )


def _local_datetime(value: str) -> datetime:
    """A local date and time (no zone: the location's) such as ``2026-06-21T13:30``."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a local date and time such as 2026-06-21T13:30") from None
    if moment.tzinfo is not None:
        raise argparse.ArgumentTypeError(f"{value!r}: give the location's local time, without a zone")
    if not 2020 <= moment.year <= 2100:
        raise argparse.ArgumentTypeError(f"{value!r}: the year must be from 2020 to 2100")
    return moment


def _parse_miswire(values: list[str]) -> dict[str, str]:
    miswire = {}
    for value in values:
        ct, sep, phase = value.partition("=")
        if not sep or not ct or phase not in ("L1", "L2", "L3"):
            raise CommandError(f"--miswire {value!r}: expected CT=PHASE, e.g. CTH-0001/D=L3")
        miswire[ct] = phase
    return miswire


class Command(BaseCommand):
    help = (
        "Simulate the house of a location: optionally backfill history, then stream sample frames "
        "(one per simulated second) over HTTP, WebSocket or MQTT with the gateway token, applying relay commands."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("location_id", type=int, help="the location whose installation is simulated")
        parser.add_argument("--transport", choices=("http", "ws", "mqtt"), default="http")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="server for HTTP and WebSocket ingest")
        parser.add_argument(
            "--mqtt-url", default=os.environ.get("MQTT_URL") or "mqtt://127.0.0.1:1883", help="MQTT broker"
        )
        parser.add_argument(
            "--token",
            default=os.environ.get("INFINITY_GATEWAY_TOKEN"),
            metavar="TOKEN",
            help="gateway ingest token, written --token=TOKEN since tokens may start with '-' "
            "(default: $INFINITY_GATEWAY_TOKEN; `manage.py load_demo --json` prints the demo's)",
        )
        parser.add_argument(
            "--speed",
            type=float,
            default=1.0,
            help="simulated seconds per wall second (default 1). Above 1 the house replays the recent past "
            "(the last N seconds with --frames N, else the last hour, never before what the server stores) "
            "and carries on in real time once it catches up: no frame is sent before its time",
        )
        parser.add_argument(
            "--seq",
            type=int,
            default=None,
            metavar="N",
            help="number the frames from N (default: after the seq the server stores for the Power Box, "
            "else 0, as a Power Box carries on its counter)",
        )
        parser.add_argument("--backfill", type=float, default=0, metavar="DAYS", help="write DAYS of history first")
        parser.add_argument(
            "--frames", type=int, default=None, metavar="N", help="stop after N frames (0: backfill only)"
        )
        parser.add_argument("--faults", action="store_true", help="inject duplicates, gaps and malformed frames")
        parser.add_argument(
            "--fault-rate", type=float, default=0.02, help="share of frames with a fault (default 0.02)"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed (default: the location id)")
        parser.add_argument(
            "--miswire", action="append", default=[], metavar="CT=PHASE", help="a CT that sits on another phase"
        )
        parser.add_argument("--reverse", action="append", default=[], metavar="CT", help="a CT mounted backwards")
        parser.add_argument("--json", action="store_true", help="WebSocket: send JSON text instead of binary frames")
        parser.add_argument("--fs", type=float, default=6400.0, help="samples per second (default 6400)")
        parser.add_argument("--every", type=int, default=10, metavar="N", help="print a status line every N frames")
        parser.add_argument("--buffer", type=int, default=120, metavar="N", help="frames kept during an outage")
        parser.add_argument("--cloudiness", type=float, default=None, help="fix the sky: 0 clear .. 1 overcast")
        parser.add_argument(
            "--house-time",
            type=_local_datetime,
            default=None,
            metavar="YYYY-MM-DDTHH:MM",
            help="the house lives from this local time on (its sun, appliances and meters) while its frames "
            "carry the real time, e.g. 2026-06-21T13:30 for a summer noon at any hour",
        )
        parser.add_argument(
            "--sunny-noon",
            action="store_true",
            help="a clear summer noon: --cloudiness 0 and --house-time 13:30 on 21 June of this year",
        )
        parser.add_argument(
            "--installation",
            type=Path,
            default=None,
            metavar="FILE",
            help="use this installation file, not the database",
        )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        error = parser.error

        def explained(message: str):
            if message.startswith("argument --token"):
                message += " (a token that starts with '-' must be written --token=TOKEN)"
            return error(message)

        parser.error = explained
        return parser

    def handle(self, *args, **options) -> None:
        self._log_to_stderr()
        location_id = options["location_id"]
        location = None
        if options["installation"] is not None:
            try:
                installation = json.loads(options["installation"].read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read {options['installation']}: {exc}") from exc
        else:
            location = self._location(location_id)
            try:
                from devices.installation import export_installation
            except ImportError as exc:
                raise CommandError(f"devices.installation.export_installation is not available ({exc})") from exc
            installation = export_installation(location)
        seed = location_id if options["seed"] is None else options["seed"]
        try:
            house = House(
                installation,
                seed=seed,
                miswire=_parse_miswire(options["miswire"]),
                reverse=options["reverse"],
                cloudiness=0.0 if options["sunny_noon"] else options["cloudiness"],
            )
        except ValueError as exc:
            raise CommandError(f"cannot simulate this installation: {exc}") from exc

        now = datetime.now(UTC)
        # Frames start after what the server stores: the Power Box's newest frame, the history.
        last_seq, resume_t = (None, None) if location is None else stored_position(house.powerbox_serial)
        if options["backfill"] > 0 and self._backfill(
            location or self._location(location_id), house, options["backfill"], now
        ):
            resume_t = max(resume_t or 0.0, history_end(now).timestamp())
        if options["frames"] == 0:
            return
        token = options["token"]
        if not token:
            raise CommandError(
                "no gateway token: pass --token=TOKEN or set INFINITY_GATEWAY_TOKEN "
                "(`manage.py load_demo --json` prints the demo's; import_installation prints a location's)"
            )
        try:
            transport = make_transport(
                options["transport"],
                url=options["url"],
                mqtt_url=options["mqtt_url"],
                token=token,
                serial=house.gateway_serial,
                binary=not options["json"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        target = options["mqtt_url"] if options["transport"] == "mqtt" else options["url"]
        first_seq = options["seq"] if options["seq"] is not None else 0 if last_seq is None else last_seq + 1
        start_t = start_time(now.timestamp(), speed=options["speed"], frames=options["frames"], resume_t=resume_t)
        house_time = options["house_time"]
        if options["sunny_noon"]:
            house_time = house_time or datetime(now.year, 6, 21, 13, 30)
        house_offset_s = 0.0 if house_time is None else house_time.replace(tzinfo=house.tz).timestamp() - start_t
        self.stdout.write(
            f"Streaming {house.topology} house {installation.get('location', {}).get('name', '')!r} "
            f"(Power Box {house.powerbox_serial}) to {target} over {transport.name}, "
            f"{options['speed']:g} frame(s) per second from seq {first_seq}, "
            f"{datetime.fromtimestamp(start_t, house.tz):%Y-%m-%d %H:%M:%S}"
            + (f" (the house lives at {house_time:%Y-%m-%d %H:%M})" if house_time is not None else "")
            + ". Ctrl+C stops."
        )
        try:
            stats = stream(
                house,
                transport,
                speed=options["speed"],
                frames=options["frames"],
                faults=options["faults"],
                fault_rate=options["fault_rate"],
                seed=seed,
                fs_hz=options["fs"],
                house_offset_s=house_offset_s,
                start_t=start_t,
                first_seq=first_seq,
                report_every=options["every"],
                buffer_limit=options["buffer"],
                out=self.stdout.write,
                warn=self.stderr.write,
            )
        except FatalTransportError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
            return
        injected = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.injected.items())) or "none"
        malformed = sum(n for kind, n in stats.injected.items() if kind not in ("duplicate", "gap"))
        if malformed:
            injected += f" ({stats.injected_refused} of {malformed} malformed frames refused by the server)"
        self.stdout.write(
            f"Done: {stats.sent} frames sent: {stats.verdicts()}, {stats.dropped} dropped; "
            f"faults injected: {injected}; {stats.commands} commands applied."
        )
        if stats.sent and stats.duplicates == stats.sent:
            self.stderr.write(
                self.style.WARNING(
                    f"Nothing was stored: the server already had all {stats.sent} frames (seq {first_seq} to "
                    f"{stats.last_seq}) and counted them as duplicates. Is another simulator numbering "
                    "this Power Box's frames? --seq N picks the numbering."
                )
            )

    def _location(self, location_id: int):
        from devices.models import Location

        try:
            return Location.objects.get(pk=location_id)
        except Location.DoesNotExist:
            raise CommandError(f"no location with id {location_id}") from None

    def _backfill(self, location, house: House, days: float, now: datetime) -> bool:
        """Write the history; False when it could not be written."""
        try:
            from metering.history import backfill  # noqa: F401
        except ImportError:
            self.stderr.write(
                "History backfill is not available (metering.history.backfill is missing); streaming only."
            )
            return False
        self.stderr.write(f"Writing {days:g} days of simulated history for {location.name!r}...")

        def bar(text: str) -> None:
            self.stderr.write(text, ending="")
            self.stderr.flush()

        try:
            written = backfill_history(location, house, days, now=now, bar=bar)
        except ImportError as exc:  # the history side is missing a piece
            self.stderr.write(f"\nHistory backfill failed ({exc}); streaming only.")
            return False
        self.stderr.write(f"History: {written} five-minute buckets written.")
        return True

    @staticmethod
    def _log_to_stderr() -> None:
        logger = logging.getLogger("tools.simulator")
        if not logger.hasHandlers():  # settings.LOGGING may already show it
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
