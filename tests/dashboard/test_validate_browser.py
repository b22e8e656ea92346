"""The installation check in a real browser: a miswired demo house found, fixed in one click, signed off.

Its own demo server (as in test_browser.py, on its own database, without the usage history),
because the test changes the demo's configuration. The test acts as the demo gateway: it posts
frames in which the heat pump's CT (CTH-DEMO-0002/D, configured on L2) sits on L3, with the heat
pump switching on and off, as an installer would make it do.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.dashboard.demo import DEMO_CTS, demo_frame, house_powers
from tests.dashboard.test_browser import CHROMIUM, LAUNCH_ARGS, DemoServer, require_chromium, signed_in

pytestmark = pytest.mark.browser

HEAT_PUMP = "CTH-DEMO-0002/D"
# Where each CT physically is: the heat pump's clamp sits on L3, not L2 as configured.
WIRED = {ref: phase for ref, (_load, phase) in DEMO_CTS.items()} | {HEAT_PUMP: "L3"}


def miswired_frame(seq: int, t: float, heat_pump_on: bool, fs_hz: float = 3200.0, duration_s: float = 0.2) -> dict:
    """A frame of the demo house as wired: the grid's L3 CT carries the heat pump."""
    powers = house_powers()
    pump = powers[HEAT_PUMP] if heat_pump_on else (0.0, 0.0)
    grid_l2, grid_l3 = powers["CTH-DEMO-0001/B"], powers["CTH-DEMO-0001/C"]
    powers |= {
        HEAT_PUMP: pump,
        "CTH-DEMO-0001/B": (grid_l2[0] - powers[HEAT_PUMP][0], grid_l2[1] - powers[HEAT_PUMP][1]),
        "CTH-DEMO-0001/C": (grid_l3[0] + pump[0], grid_l3[1] + pump[1]),
    }
    return demo_frame(seq, t, powers, fs_hz=fs_hz, duration_s=duration_s, wired=WIRED)


class CheckServer(DemoServer):
    def prepare(self) -> None:
        import json

        self.manage("migrate", "--no-input", "-v", "0")
        demo = json.loads(self.manage("load_demo", "--json").strip().splitlines()[-1])
        self.location_id, self.token = demo["location_id"], demo["gateway_token"]

    def post_miswired(self, heat_pump_on: bool) -> dict:
        self.seq += 1
        return self.api("/api/v1/ingest/frames", miswired_frame(self.seq, time.time() - 0.2, heat_pump_on))


@pytest.fixture(scope="module")
def check_server(tmp_path_factory):
    require_chromium()
    demo = CheckServer(tmp_path_factory.mktemp("validate-var"))
    demo.prepare()
    demo.start()
    yield demo
    demo.stop()


def in_own_thread(function, *args):
    """Run ``function`` in a thread of its own and return its result (or raise its exception).

    Sync Playwright allows one instance per thread, and the dashboard's browser tests keep theirs
    open for the whole session (their fixtures live in their module).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


@contextmanager
def staff_page(demo: CheckServer):
    """The demo admin (staff: may apply fixes) on the demo house's installation check."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            with signed_in(browser, demo.url, "admin", "admin", f"/locations/{demo.location_id}/validate/") as page:
                yield page
        finally:
            browser.close()


def stream_until(demo: CheckServer, locator, text: str, timeout_s: float = 60.0) -> None:
    """Frames as a gateway sends them while the installer switches the heat pump every 3 frames,
    until ``locator`` contains ``text``. The server looks at a frame every half second and
    judges every 3 s, so frames go out a little over half a second apart."""
    deadline = time.monotonic() + timeout_s
    k = 0
    while True:
        demo.post_miswired(heat_pump_on=bool((k // 3) % 2))
        k += 1
        try:
            locator.page.wait_for_function(
                "([el, text]) => el && el.textContent.includes(text)", arg=[locator.element_handle(), text], timeout=550
            )
            return
        except Exception:
            if time.monotonic() > deadline:
                raise


def test_it_finds_the_miswired_heat_pump_applies_the_fix_and_signs_off(check_server, tmp_path):
    in_own_thread(find_fix_and_sign_off, check_server, tmp_path)


def find_fix_and_sign_off(check_server: CheckServer, tmp_path) -> None:
    with staff_page(check_server) as page:
        check_miswired_house(page, check_server, tmp_path)


def check_miswired_house(page, check_server: CheckServer, tmp_path) -> None:
    from playwright.sync_api import expect

    expect(page.locator("[data-ws-status]")).to_have_text("Live")
    row = page.locator(f'#card-validation tr.ct-row[data-ct="{HEAT_PUMP}"]')
    expect(row).to_contain_text("L2")

    stream_until(check_server, page.locator("#card-validation"), "Move to L3")
    expect(row).to_contain_text("wrong phase")
    detail = page.locator(f'#card-validation tr.ct-row[data-ct="{HEAT_PUMP}"] + tr.verdict-detail')
    expect(detail).to_contain_text("Suggested fix: configure L3")
    expect(detail).to_contain_text(re.compile(r"L3.*not L2"))  # the reason, in plain words
    page.screenshot(path=str(tmp_path / "validate.png"), full_page=True)

    # A push while the installer is on the button keeps it focused (the card is replaced every second).
    button = detail.get_by_role("button", name="Move to L3")
    button.focus()
    page.evaluate("window.pushes = 0; document.addEventListener('htmx:wsAfterMessage', () => window.pushes++)")
    while page.evaluate("window.pushes") == 0:
        check_server.post_miswired(heat_pump_on=False)
        page.wait_for_timeout(600)
    assert page.evaluate("document.activeElement.id") == "fix-cth-demo-0002d-phase"

    page.evaluate("window.sameDocument = true")
    button.click()
    expect(page.locator("#fix-result .notice")).to_contain_text(
        "CTH-DEMO-0002/D (Heat pump) moved from L2 to L3 by admin (suggested by validation, confidence"
    )
    expect(row.locator("th.phase")).to_contain_text("L3")
    assert page.evaluate("window.sameDocument") is True  # swapped by htmx, not reloaded

    # Frames measured with the new configuration: the check now agrees.
    stream_until(check_server, row, "✓ ok")
    expect(row.locator(".verdict-badge")).to_have_text("✓ ok")

    page.get_by_label("Notes for the report").fill("Heat pump CT moved to L3 during commissioning.")
    page.get_by_role("button", name="Sign off installation").click()
    page.wait_for_url("**/reports/*/")
    expect(page.locator("h1")).to_have_text("Commissioning report")
    expect(page.locator(".signer")).to_have_text("admin")
    heat_pump = page.locator("table.report-cts tr.ct-row").filter(has_text=HEAT_PUMP)
    expect(heat_pump).to_contain_text("L3")
    expect(heat_pump).to_contain_text("✓ ok")
    expect(page.locator(".report-notes")).to_contain_text("Heat pump CT moved to L3")
    page.emulate_media(media="print")
    page.screenshot(path=str(tmp_path / "report-print.png"), full_page=True)
    assert page.locator(".topbar").is_hidden()  # no navigation on paper
