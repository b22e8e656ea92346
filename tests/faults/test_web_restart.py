"""A web process dies and starts again (issue 11, item 6): the browser's cards reconnect by themselves.

The real page in Debian's chromium (Playwright), signed in, on a web process of the stack with
an ingest worker beside it. The web process is killed (SIGKILL) and started again on the same
port; meanwhile the gateway keeps sending (and resending what failed). The page must show the
socket reconnecting, then live again, and its cards must take new values, all without a reload.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.dashboard.test_browser import CHROMIUM, LAUNCH_ARGS, require_chromium
from tests.faults.services import FAULTS
from tests.faults.stack import STARTUP_S, Device, Registers, RegisterWatch

pytestmark = [*FAULTS, pytest.mark.browser]

BEFORE = {"A": (1000.0, 200.0), "B": (500.0, 0.0), "C": (250.0, -50.0), "D": (800.0, 400.0)}
AFTER = {**BEFORE, "D": (1200.0, 400.0)}  # the heat pump draws more after the restart


def test_browser_cards_reconnect_by_themselves_when_a_web_process_restarts(make_stack, houses, outcome):
    require_chromium()
    stack = make_stack()
    house = houses["W1"]
    stack.run("manage.py", "collectstatic", "--no-input", "-v", "0")  # the web process serves them
    web = stack.web()
    stack.worker("worker-1")
    web.wait_ready()
    stack.wait_for_workers("worker-1")
    device = Device(web.port, house["token"], "W1")
    watch = RegisterWatch(stack.database_url, device.serial)
    device.start(interval_s=0.2)
    timings: dict[str, float] = {}

    def in_the_browser() -> None:
        """Sync Playwright in a thread of its own: the browser tests may have left an event loop in
        the main thread (tests/loops.py)."""
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            page = browser.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            path = f"/locations/{house['location_id']}/"
            page.goto(f"http://127.0.0.1:{web.port}/accounts/login/?next={path}")
            page.get_by_label("User name").fill(house["user"])
            page.get_by_label("Password").fill(house["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**{path}")
            status = page.locator("[data-ws-status]")
            heat_pump = page.locator("#card-live-values tbody.kind-appliance td.p").first
            expect(status).to_have_text("Live")
            expect(heat_pump).to_have_text("800")
            page.evaluate("window.sameDocument = true")

            web.role.kill()
            killed_at = time.monotonic()
            expect(status).to_have_text("Reconnecting…")
            web.role.start()
            web.wait_ready()
            timings["down_s"] = time.monotonic() - killed_at
            started_at = time.monotonic()
            expect(status).to_have_text("Live", timeout=30_000)
            timings["live_s"] = time.monotonic() - started_at
            device.set_loads(AFTER)
            expect(heat_pump).to_have_text("1200")
            timings["card_s"] = time.monotonic() - started_at
            assert page.evaluate("window.sameDocument") is True  # updated in place, never reloaded
            browser.close()
            assert errors == []

    with ThreadPoolExecutor(1) as thread:
        thread.submit(in_the_browser).result(timeout=STARTUP_S + 90)  # the web process starts again in it
    device.stop()
    watch.stop()

    state = Registers(stack.database_url).read(device.serial)
    outcome(
        f"web process killed (SIGKILL) and back on its port after {timings['down_s']:.1f} s: the page's socket "
        f"was live again {timings['live_s']:.1f} s after the restart and its card showed a new value "
        f"{timings['card_s']:.1f} s after it, without a reload; {device.sent} frames acknowledged, "
        f"{state['frames']} stored; registers sampled {len(watch.samples)} times: never negative, down or jumping"
    )
    receipts = [answer.receipt for answer in device.answers if answer.status == 200]
    assert state["frames"] == device.sent and state["duplicates"] == receipts.count("duplicate")
    assert {answer.status for answer in device.refusals()} <= {None, 503}  # the connection lost, or no answer
    assert state["gaps"] == 0
    assert watch.problems() == [] and len(watch.samples) > 20  # never negative, down or jumping
