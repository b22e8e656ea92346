"""``manage.py import_installation FILE``: create or update a location from an installation file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices import rules
from devices.installation import ImportResult, InstallationError, import_installation

#: An installation file lists one location's modules: a few kB. Anything far larger is not one.
MAX_FILE_BYTES = 1024 * 1024


def read_installation_file(path: str) -> object:
    """The parsed JSON of ``path`` ("-" reads standard input), or a CommandError saying what is wrong."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise CommandError(f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB: not an installation file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from exc
    except RecursionError as exc:
        raise CommandError(f"{path} nests arrays or objects too deeply to be an installation file.") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise CommandError(f"{path} is not valid JSON: {exc}.") from exc


class Command(BaseCommand):
    help = (
        "Create or update a location from an installation file (JSON, see SPEC 5.1). Prints the location id "
        "and, when one is issued, the gateway's ingest token. Rule violations are listed as "
        "'<path>: <message>' on stderr and nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="installation file (JSON); '-' reads standard input")
        parser.add_argument(
            "--json",
            action="store_true",
            help='end with one line {"location_id": N, "gateway_token": "..." or null}',
        )
        parser.add_argument(
            "--rotate-token",
            action="store_true",
            help="issue a new gateway ingest token even if the gateway is unchanged (the old one stops working)",
        )

    def handle(self, *args, **options) -> None:
        doc = read_installation_file(options["file"])
        try:
            result = import_installation(doc, rotate_token=options["rotate_token"])
        except InstallationError as exc:
            print_violations(self, exc.violations)
            raise CommandError(f"{options['file']}: {rules.summarize(exc.violations)}; nothing was imported.") from exc
        print_violations(self, result.warnings)
        report(self, result)
        if options["json"]:
            self.stdout.write(json.dumps({"location_id": result.location.pk, "gateway_token": result.gateway_token}))


def print_violations(command: BaseCommand, violations: list[rules.Violation]) -> None:
    for violation in violations:
        if violation.is_error:
            command.stderr.write(f"{violation.path}: {violation.message}")
        else:
            command.stderr.write(f"{violation.path}: warning: {violation.message}", command.style.WARNING)


def report(command: BaseCommand, result: ImportResult) -> None:
    location = result.location
    if result.created:
        command.stdout.write(f"Created location {location.name!r} (id {location.pk}).")
    elif result.changed:
        command.stdout.write(f"Updated location {location.name!r} (id {location.pk}): {len(result.changes)} changes.")
        for change in result.changes:
            command.stdout.write(f"  - {change}")
    else:
        command.stdout.write(f"Location {location.name!r} (id {location.pk}) is unchanged.")
    serial = location.gateway.serial
    if result.gateway_token:
        command.stdout.write(
            f"Ingest token of gateway {serial}: {result.gateway_token}\n"
            "It is shown only this once (only its hash is stored): configure the gateway with it now."
        )
    else:
        command.stdout.write(
            f"The ingest token of gateway {serial} is unchanged (use --rotate-token to issue a new one)."
        )
