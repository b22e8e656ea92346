"""An automation switching a relay of the simulated house, seen in a real browser (issue 12's Done-when).

Its own demo server (as tests/dashboard/test_browser.py runs it, on its own database): the owner
creates the self-consumption automation from its template on the page, then the simulated demo
house (``manage.py simulate --sunny-noon``: a clear 21 June at 13:30, whatever the hour) streams
its frames over HTTP, exporting well over a kilowatt. The automation asks for the boiler, the
simulator applies the command and acknowledges it, and the dashboard shows the Event.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.dashboard.test_browser import CHROMIUM, LAUNCH_ARGS, ROOT, DemoServer, require_chromium, signed_in

pytestmark = pytest.mark.browser


class HouseServer(DemoServer):
    def prepare(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")
        demo = json.loads(self.manage("load_demo", "--json").strip().splitlines()[-1])
        self.location_id, self.token = demo["location_id"], demo["gateway_token"]

    def simulate(self, frames: int) -> subprocess.Popen:
        """The simulated demo house on a sunny noon, one frame a second, over HTTP."""
        log = open(self.var_dir / "simulator.log", "a")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(
            [
                sys.executable, "manage.py", "simulate", str(self.location_id), "--url", self.url,
                f"--token={self.token}", "--sunny-noon", "--frames", str(frames), "--fs", "3200", "--every", "5",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture(scope="module")
def house_server(tmp_path_factory):
    require_chromium()
    server = HouseServer(tmp_path_factory.mktemp("automations-var"))
    server.prepare()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium(house_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def test_the_self_consumption_template_switches_the_boiler_on_a_sunny_noon(chromium, house_server):
    from playwright.sync_api import expect

    automations = f"/locations/{house_server.location_id}/automations/"
    with signed_in(chromium, house_server.url, "demo", "demo", automations) as page:
        page.get_by_role("link", name="Self-consumption").click()
        expect(page.get_by_label("Relay")).to_have_value(
            page.get_by_label("Relay").locator("option", has_text="Boiler").get_attribute("value")
        )
        threshold = page.get_by_label("Threshold (W, A, or the input's unit per hour)")
        expect(threshold).to_have_value("1500.0")
        threshold.fill("1000")
        page.get_by_label("For (s)").fill("5")
        page.get_by_role("button", name="Save automation").click()
        page.wait_for_url(f"**{automations}")
        expect(page.locator(".automation")).to_contain_text(
            "When grid export is above 1,000 W (until below 200 W) for 5 s, switch Boiler on"
        )

        page.get_by_role("link", name=house_server_name(page)).click()
        expect(page.locator("[data-ws-status]")).to_have_text("Live", timeout=5_000)
        simulator = house_server.simulate(frames=90)
        try:
            events = page.locator("#events-live")
            expect(events).to_contain_text("Automation “Self-consumption”: switch Boiler on", timeout=40_000)
            expect(events).to_contain_text("Boiler switched on (by automation “Self-consumption”)", timeout=20_000)
            boiler = page.locator("#card-relays li.relay").filter(has_text="Boiler")
            expect(boiler.locator(".state-badge")).to_have_text("On")
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)
        log = (house_server.var_dir / "simulator.log").read_text()
        assert "relay OUT-DEMO-0001/1 (Boiler) on, acknowledged" in log, log[-2000:]


def house_server_name(page) -> str:
    """The location's name in the crumbs, which links back to its dashboard."""
    return page.locator(".crumbs a").nth(1).inner_text()
