"""Broken installation files: imported, or refused with the reasons and nothing written — never a crash.

``import_installation`` (the import command, ``load_demo`` and the benchmarks use it) gets the
demo file with one to three things changed; the import command gets files broken at the byte
level. Each example runs in a savepoint rolled back afterwards, next to an existing house whose
serials a file may try to take.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import event, example, given, settings

from devices.installation import InstallationError, import_installation
from tests.factories import make_location
from tests.fuzz.conftest import budget, changes, stored_state
from tests.fuzz.strategies import demo_installation, demo_installation_text, installation_doc, installation_text

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]


@pytest.fixture
def neighbour():
    """A house whose gateway, Power Box and modules (serials ``*-O``) belong to it."""
    return make_location(name="Next door", serial_prefix="O")


def test_it_imports_the_unbroken_demo_file_the_fuzzing_starts_from(neighbour):
    result = import_installation(demo_installation())
    assert result.created and result.gateway_token


@settings(max_examples=budget(250))
@given(change=installation_doc())
@example(
    change=(
        {**demo_installation(), "location": {**demo_installation()["location"], "frequency": 10**30}},
        ["huge frequency"],
    )
)
@example(change=({**demo_installation(), "location": {**demo_installation()["location"], "id": 2**63}}, ["huge id"]))
def test_it_imports_or_refuses_every_broken_installation_file_with_its_reasons(neighbour, change):
    doc, how = change
    with transaction.atomic():
        before = stored_state()
        try:
            import_installation(doc)
        except InstallationError as refusal:
            event("refused")
            assert refusal.violations and all(str(v).strip() for v in refusal.violations), how
            after = stored_state()
            assert after == before, f"a refused file ({how}) changed {changes(before, after)}"
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            pytest.fail(f"import_installation raised {type(exc).__name__}: {exc!s:.300} for {how}")
        else:
            event("imported")
        transaction.set_rollback(True)


@settings(max_examples=budget(40))
@given(change=installation_text())
@example(change=(b"[" * 100_000 + b"]" * 100_000, "arrays nested 100000 deep"))
@example(
    change=(
        demo_installation_text().encode().replace(b'"frequency": 50', b'"frequency": ' + b"7" * 5000),
        "5000 digits",
    )
)
def test_it_answers_every_unreadable_installation_file_with_a_command_error(neighbour, tmp_path, change):
    text, how = change
    path = tmp_path / "installation.json"
    path.write_bytes(text)
    with transaction.atomic():
        before = stored_state()
        try:
            call_command("import_installation", str(path), stdout=io.StringIO(), stderr=io.StringIO())
        except CommandError as refusal:
            event("refused")
            assert str(refusal).strip(), how
            after = stored_state()
            assert after == before, f"a refused file ({how}) changed {changes(before, after)}"
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            pytest.fail(f"import_installation {how}: {type(exc).__name__}: {exc!s:.300} instead of a CommandError")
        else:
            event("imported")
        transaction.set_rollback(True)
