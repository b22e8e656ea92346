"""In a real browser: a page whose session signs out in another tab says so and stops its updates."""

from __future__ import annotations

import pytest

from tests.dashboard.test_browser import browser, live_open, server, signed_in  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_it_shows_signed_out_when_the_session_signs_out_in_another_tab(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    path = f"/locations/{server.location_id}/"
    with signed_in(browser, server.url, "demo", "demo", path) as page:
        live_open(page)
        other_tab = page.context.new_page()
        other_tab.goto(f"{server.url}{path}")
        other_tab.get_by_role("button", name="Sign out").click()
        other_tab.wait_for_url("**/accounts/login/")
        status = page.get_by_role("status").filter(has_text="Signed out")
        expect(status).to_have_text("Signed out — sign in again", timeout=5_000)
        expect(status.get_by_role("link", name="sign in again")).to_have_attribute(
            "href", f"/accounts/login/?next={path.replace('/', '%2F')}"
        )
        page.wait_for_timeout(1_500)  # no reconnection attempt replaces the message
        expect(status).to_have_text("Signed out — sign in again")
