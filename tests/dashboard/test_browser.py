"""The dashboard in a real browser: Debian's chromium driven by Playwright against a real server.

A session-scoped server runs ``manage.py runserver`` (daphne, serving static files with
DEBUG=1) on its own SQLite database in a temporary VAR_DIR, after ``migrate``, ``load_demo``
and two days of demo history. The tests act as the demo gateway: they post sample frames and
relay acknowledgements over HTTP, like a device would.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.dashboard.demo import BRUSSELS, demo_frame, house_powers

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshots" / "dashboard.png"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        message = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium, or run bin/test)"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the browser tests", pytrace=False)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DemoServer:
    """``manage.py runserver`` on the demo house, and the demo gateway's side of the API."""

    def __init__(self, var_dir: Path):
        self.var_dir = var_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MQTT_URL"}}
        self.env.update(DJANGO_SETTINGS_MODULE="config.settings", DEBUG="1", VAR_DIR=str(var_dir), LOG_LEVEL="WARNING")
        self.process: subprocess.Popen | None = None
        self.seq = 0

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def prepare(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")
        demo = json.loads(self.manage("load_demo", "--json").strip().splitlines()[-1])
        self.location_id, self.token = demo["location_id"], demo["gateway_token"]
        done = subprocess.run(
            [sys.executable, "-m", "tests.dashboard.backfill_demo", str(self.location_id), "2"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        log = open(self.var_dir / "server.log", "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the server did not start: {(self.var_dir / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def api(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post_frame(self, scale: float = 1.0, door_closed: bool = False) -> dict:
        """One frame of the demo house, as its gateway would send it; returns the ingest reply."""
        self.seq += 1
        inputs = {
            "INP-DEMO-0001/1": {"state": 0, "pulses": 123_400 + self.seq},
            "INP-DEMO-0001/2": {"state": 0, "pulses": 50_000 + 3 * self.seq},
            "INP-DEMO-0001/3": {"state": int(door_closed), "pulses": 0},
        }
        return self.api("/api/v1/ingest/frames", demo_frame(self.seq, time.time() - 0.2, house_powers(scale), inputs))

    def live_solar_w(self) -> str:
        """The solar power of the live API (the newest frame's), as the live card shows it."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/locations/{self.location_id}/live", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            values = json.loads(response.read())
        solar = next(load for load in values["loads"] if load["kind"] == "solar")
        return f"{solar['phases'][0]['p']:.0f}"

    def acknowledge(self, command: dict) -> dict:
        """What the Output module answers once it switched: the command's id, relay and state."""
        return self.api(
            "/api/v1/ingest/acks",
            {"type": "ack", "command": command["id"], "relay": command["relay"], "on": command["on"]},
        )


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    require_chromium()
    demo = DemoServer(tmp_path_factory.mktemp("browser-var"))
    demo.prepare()
    demo.start()
    yield demo
    demo.stop()


@pytest.fixture(scope="session")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def signed_in(browser, base_url: str, user: str, password: str, path: str):
    """A page of ``user`` signed in through the form and sent on to ``path``; fails on a script error."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base_url}/accounts/login/?next={path}")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")
    yield page
    context.close()
    assert errors == []


@pytest.fixture
def page(browser, server):
    """A signed-in page of the demo owner (demo / demo) on the dashboard; fails on a script error."""
    with signed_in(browser, server.url, "demo", "demo", f"/locations/{server.location_id}/") as page:
        yield page


def live_open(page, timeout_ms: int = 5_000) -> None:
    from playwright.sync_api import expect

    expect(page.locator("[data-ws-status]")).to_have_text("Live", timeout=timeout_ms)


def open_yesterdays_usage(page, server) -> None:
    """The dashboard with yesterday's usage: the backfill filled it, while today may have no
    bucket yet (just after the location's midnight the card rightly shows its empty state)."""
    yesterday = datetime.now(BRUSSELS).date() - timedelta(days=1)
    page.goto(f"{server.url}/locations/{server.location_id}/?period=day&date={yesterday.isoformat()}")


def solar_power(page):
    return page.locator("#card-live-values tbody.kind-solar td.p").first


def stream_until(server, locator, text: str, scale: float, door_closed: bool = False, timeout_s: float = 10) -> None:
    """Send a frame every half second, like a gateway, until ``locator`` shows ``text``.

    One frame may not be enough: the page may have opened its socket just after the frame was
    pushed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        server.post_frame(scale=scale, door_closed=door_closed)
        try:
            locator.page.wait_for_function(
                "([el, text]) => el && el.textContent.trim() === text",
                arg=[locator.element_handle(), text],
                timeout=500,
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def test_it_updates_the_live_card_without_reloading(page, server):
    from playwright.sync_api import expect

    live_open(page)
    page.evaluate("window.sameDocument = true")
    stream_until(server, solar_power(page), "2400", scale=1.0)
    stream_until(server, solar_power(page), "2640", scale=1.1, door_closed=True)
    expect(page.locator("#card-inputs .state")).to_have_text("Closed")
    expect(page.locator("#card-live-values [data-age]")).to_have_text("")
    assert page.evaluate("window.sameDocument") is True  # swapped in place, never reloaded


def test_it_shows_the_second_of_two_quick_frames_within_a_second_and_a_half(page, server):
    """Pushes are coalesced to one a second: the second frame of a burst comes with the trailing
    push at the end of that second, not with some later frame."""
    from playwright.sync_api import expect

    live_open(page)
    stream_until(server, solar_power(page), "2400", scale=1.0)
    time.sleep(1.0)  # a quiet interval: the next frame is pushed at once
    server.post_frame(scale=1.1)
    first = server.live_solar_w()
    time.sleep(0.05)
    server.post_frame(scale=1.2)  # accepted when post_frame returns
    second = server.live_solar_w()
    assert second != first
    expect(solar_power(page)).to_have_text(second, timeout=1500)
    page.wait_for_timeout(1500)  # and it stays
    expect(solar_power(page)).to_have_text(second)


def test_it_switches_a_relay_once_the_device_acknowledges(page, server):
    from playwright.sync_api import expect

    live_open(page)
    boiler = page.locator("#card-relays li.relay").filter(has_text="Boiler")
    boiler.get_by_role("button", name="On", exact=True).click()
    expect(boiler.locator(".relay-state")).to_contain_text("Switching on…")
    expect(boiler.locator(".state-badge")).to_have_text("Off")

    # The device picks the command up with its next frame and acknowledges it.
    commands = [c for c in server.post_frame()["commands"] if c["relay"] == "OUT-DEMO-0001/1"]
    assert commands and commands[-1]["on"] is True
    server.acknowledge(commands[-1])

    expect(boiler.locator(".state-badge")).to_have_text("On")
    expect(boiler.locator(".relay-state")).to_contain_text("since")
    expect(boiler.locator(".relay-state")).not_to_contain_text("Switching")
    expect(page.locator("#events-live .event").first).to_contain_text("Boiler switched on (by demo)")

    page.get_by_label("Show").select_option("relay")  # htmx swaps the events card, pushes the URL
    page.wait_for_url("**/?kind=relay")
    expect(page.locator("#card-events #events-page")).to_be_attached()
    assert set(page.locator("#card-events .event-kind").all_text_contents()) == {"Relay switched"}


def test_it_draws_the_usage_chart_and_downloads_the_plotted_data(page, server):
    from playwright.sync_api import expect

    open_yesterdays_usage(page, server)
    expect(page.locator("#usage-chart svg.main-svg").first).to_be_attached()
    expect(page.locator("#usage-chart .legendtext")).to_have_count(5)
    page.locator("#card-usage .segmented").get_by_role("link", name="Week").click()
    expect(page.locator("#card-usage .period-title")).to_contain_text("Week")
    expect(page.locator("#usage-chart svg.main-svg").first).to_be_attached()
    assert "period=week" in page.url

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith(f"usage-{server.location_id}-week-")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert rows[0] == [
        "Start (Europe/Brussels)",
        "Consumption [kWh]",
        "Solar [kWh]",
        "Grid import [kWh]",
        "Grid export [kWh]",
        "Always-on [kW]",
    ]
    assert len(rows) - 1 in (7 * 24 - 1, 7 * 24, 7 * 24 + 1)  # hourly rows of a (DST) week
    plotted = page.evaluate("document.getElementById('usage-chart').data.map(t => [t.name, t.y])")
    consumption = dict(plotted)["Consumption"]
    assert [None if row[1] == "" else float(row[1]) for row in rows[1:]] == consumption


def test_it_looks_right_on_a_wide_and_a_narrow_screen(page, server, tmp_path):
    """A full-page screenshot: into docs/screenshots/ with UPDATE_SCREENSHOTS=1, else a temp dir
    (so running the tests does not change tracked files)."""
    from playwright.sync_api import expect

    open_yesterdays_usage(page, server)
    live_open(page)
    stream_until(server, solar_power(page), "2400", scale=1.0)
    expect(page.locator("#usage-chart svg.main-svg").first).to_be_attached()
    page.wait_for_timeout(300)  # let plotly finish its transitions
    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 50_000

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    # Focus is visible on keyboard navigation.
    page.keyboard.press("Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).boxShadow") != "none"


def test_it_reconnects_by_itself_after_a_server_restart(page, server):
    from playwright.sync_api import expect

    live_open(page)
    server.stop()
    expect(page.locator("[data-ws-status]")).to_have_text("Reconnecting…")
    server.start()
    # The ws extension reconnects after an abnormal close (1006) with a full-jitter backoff that
    # doubles per failed attempt (up to 1, 2, 4, 8 s while the server was down).
    live_open(page, timeout_ms=30_000)
    stream_until(server, solar_power(page), "2880", scale=1.2)
