"""In a real browser: a page whose session signs out in another tab says so and stops its updates.

Its own demo server and Playwright in a thread of its own, as in test_validate_browser.py (the
dashboard's browser tests keep theirs open for the whole session).
"""

from __future__ import annotations

import json

import pytest

from tests.dashboard.test_browser import CHROMIUM, LAUNCH_ARGS, DemoServer, live_open, require_chromium, signed_in
from tests.dashboard.test_validate_browser import in_own_thread

pytestmark = pytest.mark.browser


class AccessServer(DemoServer):
    def prepare(self) -> None:
        self.manage("migrate", "--no-input", "-v", "0")
        demo = json.loads(self.manage("load_demo", "--json").strip().splitlines()[-1])
        self.location_id, self.token = demo["location_id"], demo["gateway_token"]


@pytest.fixture(scope="module")
def access_server(tmp_path_factory):
    require_chromium()
    demo = AccessServer(tmp_path_factory.mktemp("access-var"))
    demo.prepare()
    demo.start()
    yield demo
    demo.stop()


def sign_out_in_another_tab(demo: AccessServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    path = f"/locations/{demo.location_id}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            with signed_in(browser, demo.url, "demo", "demo", path) as page:
                live_open(page)
                other_tab = page.context.new_page()
                other_tab.goto(f"{demo.url}{path}")
                other_tab.get_by_role("button", name="Sign out").click()
                other_tab.wait_for_url("**/accounts/login/")
                status = page.get_by_role("status").filter(has_text="Signed out")
                expect(status).to_have_text("Signed out — sign in again", timeout=5_000)
                link = status.get_by_role("link", name="sign in again")
                expect(link).to_have_attribute("href", f"/accounts/login/?next={path.replace('/', '%2F')}")
                page.wait_for_timeout(1_500)  # no reconnection attempt replaces the message
                expect(status).to_have_text("Signed out — sign in again")
        finally:
            browser.close()


def test_it_shows_signed_out_when_the_session_signs_out_in_another_tab(access_server):
    in_own_thread(sign_out_in_another_tab, access_server)
