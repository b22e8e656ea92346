"""The fuzz tests' fixed example budget, their houses and the snapshot a refusal must leave as it was.

Hypothesis runs a fixed number of examples per test, derandomized: CI sees the same examples on
every run (no flaky new find), and nothing is kept between runs. For a hunt on a laptop,
``HYPOTHESIS_PROFILE=explore FUZZ_EXAMPLES_SCALE=20`` draws new examples, twenty times as many;
``HYPOTHESIS_PROFILE=generated`` runs CI's examples without the explicit ones.
"""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, Phase, settings

from devices.models import (
    CtInput,
    CtModule,
    DigitalInput,
    Event,
    Gateway,
    InputModule,
    Load,
    LoadCt,
    Location,
    Membership,
    OutputModule,
    PowerBox,
    Relay,
)
from metering import live
from metering.models import InputCount, LoadEnergy, LocationEnergy, PowerBoxState, RelayCommand
from tests.factories import make_location

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    # The houses are made once per test and shared by its examples on purpose; the bodies are
    # large (a frame of seven 320-sample channels) and slow to build by design.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False)
# CI's generated examples without the explicit ones (a failing explicit example stops a test
# before anything is generated): what else is still broken.
settings.register_profile("generated", parent=settings.get_profile("ci"), phases=[Phase.generate, Phase.shrink])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
EXAMPLES_SCALE = float(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def budget(examples: int) -> int:
    """A test's number of examples: its CI budget, times ``FUZZ_EXAMPLES_SCALE`` for a longer hunt."""
    return max(1, round(examples * EXAMPLES_SCALE))


DEVICE_MODELS = (
    Location, Membership, Gateway, PowerBox, CtModule, CtInput, InputModule, DigitalInput, OutputModule, Relay,
    Load, LoadCt,
)  # fmt: skip
INGEST_MODELS = (PowerBoxState, LocationEnergy, LoadEnergy, InputCount, RelayCommand)


def stored_state() -> dict:
    """Every row ingest or an import may write, except the invalid-frame events a refusal writes on purpose."""
    state = {model.__name__: list(model.objects.order_by("pk").values()) for model in (*DEVICE_MODELS, *INGEST_MODELS)}
    state["Event"] = list(Event.objects.exclude(kind=Event.INVALID_FRAME).order_by("pk").values())
    state["live"] = {pk: cache.get(live.key(pk)) for pk in Location.objects.values_list("pk", flat=True)}
    return state


def changes(before: dict, after: dict) -> dict:
    """The tables whose rows differ, with the rows before and after (for the failure message)."""
    return {name: {"before": before[name], "after": after[name]} for name in before if before[name] != after[name]}


def forget_ingest_state() -> None:
    """Start an example afresh: no cached live values or installations, no leftover samples.

    ``metering.ingest.process`` keeps each Power Box's leftover samples in the process; an example must
    not depend on what an earlier example left there (or shrinking finds a different failure).
    """
    from metering.ingest import process

    cache.clear()
    with process._carry_lock:
        process._carries.clear()


@pytest.fixture
def houses():
    """The test house ``T`` (token returned) and the house next door ``O`` with its own hardware."""
    location, token = make_location(serial_prefix="T")
    neighbour, neighbour_token = make_location(name="Next door", serial_prefix="O")
    return {"T": (location, token), "O": (neighbour, neighbour_token)}
