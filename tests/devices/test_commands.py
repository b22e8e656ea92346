"""The import_installation, export_installation and load_demo management commands."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from devices.installation import export_installation
from devices.management.commands import import_installation as import_command
from devices.models import Event, Gateway, Location, Membership
from tests.devices.conftest import base_doc

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, doc: object, name: str = "installation.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2) if not isinstance(doc, str) else doc, encoding="utf-8")
    return str(path)


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def test_it_imports_a_file_and_prints_the_location_and_its_token(tmp_path):
    out, err = run("import_installation", write(tmp_path, base_doc()))

    location = Location.objects.get()
    assert f"Created location 'Demo house' (id {location.pk})." in out
    [token] = [
        line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Ingest token of gateway GW-0001")
    ]
    assert Gateway.for_token(token).location == location
    assert err == ""


def test_it_ends_with_a_json_line_when_asked(tmp_path):
    path = write(tmp_path, base_doc())

    first = json.loads(last_line(run("import_installation", path, "--json")[0]))
    second_out = run("import_installation", path, "--json")[0]
    second = json.loads(last_line(second_out))

    location = Location.objects.get()
    assert set(first) == {"location_id", "gateway_token"}
    assert first["location_id"] == location.pk and Gateway.for_token(first["gateway_token"]).location == location
    assert last_line(second_out) == f'{{"location_id": {location.pk}, "gateway_token": null}}'
    assert second == {"location_id": location.pk, "gateway_token": None}
    assert "is unchanged" in second_out and "use --rotate-token" in second_out


def test_it_rotates_the_token_on_request(tmp_path):
    path = write(tmp_path, base_doc())
    first = json.loads(last_line(run("import_installation", path, "--json")[0]))

    second = json.loads(last_line(run("import_installation", path, "--json", "--rotate-token")[0]))

    assert second["gateway_token"] not in (None, first["gateway_token"])
    assert Gateway.for_token(first["gateway_token"]) is None
    assert Gateway.for_token(second["gateway_token"]) is not None


def test_it_lists_every_violation_on_stderr_and_writes_nothing(tmp_path):
    doc = base_doc()
    doc["location"]["topology"] = "1P"
    doc["gateway"]["model"] = "connect"
    path = write(tmp_path, doc)
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"4 errors; nothing was imported\.$"):
        call_command("import_installation", path, stdout=io.StringIO(), stderr=err)

    assert err.getvalue().splitlines() == [
        "input_modules[0]: Input and Output modules only work with a Genius (MOD-GW-1) gateway; "
        "this installation's gateway is a Connect (MOD-GW-3).",
        "output_modules[0]: Input and Output modules only work with a Genius (MOD-GW-1) gateway; "
        "this installation's gateway is a Connect (MOD-GW-3).",
        "loads[0].cts[1].phase: Phase L2 does not exist in a 1P installation (single phase 1×230 V): use L1.",
        "loads[0].cts[2].phase: Phase L3 does not exist in a 1P installation (single phase 1×230 V): use L1.",
    ]
    assert not Location.objects.exists() and not Event.objects.exists()


def test_it_exits_non_zero_on_violations(tmp_path, capsys, monkeypatch):
    # run_from_argv closes the database connections on exit, which would end the test's transaction.
    monkeypatch.setattr("django.db.connections.close_all", lambda: None)
    doc = base_doc()
    doc["powerbox"]["bus_b_length_m"] = 600

    with pytest.raises(SystemExit) as exited:
        import_command.Command().run_from_argv(["manage.py", "import_installation", write(tmp_path, doc)])

    assert exited.value.code == 1
    assert "powerbox.bus_b_length_m: The gateway–Power Box bus (B) may be at most 500 m long" in capsys.readouterr().err
    assert not Location.objects.exists()


def test_it_prints_warnings_but_imports(tmp_path):
    doc = base_doc()
    doc["loads"][1]["cts"][0]["reversed"] = True

    out, err = run("import_installation", write(tmp_path, doc), "--json")

    assert err.startswith("loads[1].cts[0].reversed: warning: CT CTH-0001/D of load 'Heat pump' is marked reversed")
    assert json.loads(last_line(out))["location_id"] == Location.objects.get().pk


def test_it_points_at_the_line_and_column_of_malformed_json(tmp_path):
    path = write(tmp_path, '{\n  "location": {"name": "x",}\n}')

    with pytest.raises(CommandError) as raised:
        call_command("import_installation", path)

    assert str(raised.value) == (
        f"{path} is not valid JSON: Expecting property name enclosed in double quotes at line 2, column 28."
    )


def test_it_says_when_the_file_cannot_be_read(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.json: No such file or directory\."):
        call_command("import_installation", str(tmp_path / "missing.json"))


def test_it_refuses_a_file_too_large_to_be_an_installation_without_reading_it_whole(tmp_path):
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (import_command.MAX_FILE_BYTES + 1))
    with pytest.raises(CommandError, match=r"huge\.json is larger than 1024 KiB: not an installation file\."):
        call_command("import_installation", str(path))
    assert not Location.objects.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests arrays or objects too deeply"),
        (b'{"a": ' + b"7" * 5000 + b"}", "is not valid JSON"),
    ],
)
def test_it_answers_json_beyond_the_parsers_limits_with_a_command_error(tmp_path, content, reason):
    path = tmp_path / "deep.json"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=reason):
        call_command("import_installation", str(path))
    assert not Location.objects.exists()


def test_it_exports_a_location_as_indented_json(tmp_path):
    run("import_installation", write(tmp_path, base_doc()))
    location = Location.objects.get()

    out, _err = run("export_installation", str(location.pk))

    assert json.loads(out) == export_installation(location)
    assert out.startswith('{\n  "location": {\n    "id": ')


def test_it_round_trips_through_the_commands(tmp_path):
    run("import_installation", write(tmp_path, base_doc()))
    location = Location.objects.get()
    exported = run("export_installation", str(location.pk))[0]

    out, _err = run("import_installation", write(tmp_path, exported, "exported.json"), "--json")

    assert json.loads(last_line(out)) == {"location_id": location.pk, "gateway_token": None}
    assert Location.objects.count() == 1


def test_it_refuses_to_export_an_unknown_location():
    with pytest.raises(CommandError, match=r"^No location with id 999\.$"):
        call_command("export_installation", "999")


def test_it_loads_the_demo_with_its_accounts():
    out, _err = run("load_demo", "--json")

    location = Location.objects.get()
    result = json.loads(last_line(out))
    assert result["location_id"] == location.pk
    assert Gateway.for_token(result["gateway_token"]).location == location
    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("demo") and not demo.is_staff
    assert Membership.objects.get(user=demo).role == Membership.OWNER
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("admin") and admin.is_staff and admin.is_superuser
    assert "demo / demo" in out and "admin / admin" in out and result["gateway_token"] in out


def test_it_loads_the_demo_again_without_duplicates_and_with_a_new_token():
    first = json.loads(last_line(run("load_demo", "--json")[0]))

    second = json.loads(last_line(run("load_demo", "--json")[0]))

    assert second["location_id"] == first["location_id"]
    assert Location.objects.count() == 1 and Membership.objects.count() == 1
    assert get_user_model().objects.filter(username__in=["demo", "admin"]).count() == 2
    assert Gateway.for_token(first["gateway_token"]) is None
    assert Gateway.for_token(second["gateway_token"]) is not None
