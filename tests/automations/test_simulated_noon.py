"""The simulator's house clock (tools.simulator.stream ``house_offset_s``, ``simulate --house-time``
/ ``--sunny-noon``): a sunny noon streamed at any hour, its frames stamped with the real time."""

from __future__ import annotations

import orjson
import pytest
from django.core.management import CommandError, call_command

from tests.tools.test_simulator import FakeTransport, at, installation, run
from tools.simulator.house import House

WINTER_MORNING = at(2026, 12, 4, 8)
SUMMER_NOON = at(2026, 6, 21, 13, 30)


def test_it_streams_what_the_house_does_at_its_own_time_stamped_with_the_real_time():
    offset = SUMMER_NOON - at(2026, 5, 1, 12)  # run() starts its frames on 1 May at noon
    transport = FakeTransport()
    run(House(installation(), seed=1, cloudiness=0.0), transport, frames=3, house_offset_s=offset)
    docs = [orjson.loads(p.data) for p in transport.payloads]
    assert [d["t"] for d in docs] == [at(2026, 5, 1, 12) + k for k in range(3)]
    twin = House(installation(), seed=1, cloudiness=0.0)
    voltages, currents, _ = twin.frame(SUMMER_NOON + 2, 1.0, 1000)
    assert docs[2]["currents"]["CTH-0001/D"] == pytest.approx(currents["CTH-0001/D"].tolist(), abs=1e-3)
    assert twin.totals(SUMMER_NOON).grid_w < -1000  # the sun exports at that noon...
    assert twin.totals(WINTER_MORNING).solar_w < 50  # ...where a December morning has almost none


def test_it_moves_a_timed_command_to_the_house_clock():
    offset = SUMMER_NOON - at(2026, 5, 1, 12)
    until = at(2026, 5, 1, 12) + 600  # server time: ten minutes after the first frame
    command = {"type": "command", "id": "c1", "relay": "OUT-0001/1", "on": True, "until": until}
    house = House(installation(), seed=1)
    run(house, FakeTransport(commands=[command]), frames=2, house_offset_s=offset)
    assert house.relay_is_on("OUT-0001/1", SUMMER_NOON + 300)
    assert not house.relay_is_on("OUT-0001/1", SUMMER_NOON + 700)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("noon", "is not a local date and time"),
        ("2026-06-21T13:30+02:00", "without a zone"),
        ("1999-06-21T13:30", "from 2020 to 2100"),
    ],
)
def test_it_refuses_a_house_time_it_cannot_read(tmp_path, value, message):
    path = tmp_path / "house.json"
    path.write_text(orjson.dumps(installation()).decode())
    with pytest.raises(CommandError, match=message):
        call_command("simulate", "1", "--installation", str(path), "--token=t", "--house-time", value)
