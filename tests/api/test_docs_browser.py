"""The API documentation and the tokens page in a real browser (Debian's chromium, Playwright).

A signed-in user creates an API token on the page (plain form, no script needed), the token
reads the API, and /api/docs/ renders one Swagger UI block per operation of the OpenAPI
description, while the browser fetches nothing from any other origin than this server.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.dashboard.test_browser import CHROMIUM, LAUNCH_ARGS, DemoServer, require_chromium

pytestmark = pytest.mark.browser


class DocsServer(DemoServer):
    def prepare(self) -> None:  # the demo house without its history: the docs need none
        self.manage("migrate", "--no-input", "-v", "0")
        demo = json.loads(self.manage("load_demo", "--json").strip().splitlines()[-1])
        self.location_id = demo["location_id"]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    require_chromium()
    server = DocsServer(tmp_path_factory.mktemp("api-docs-var"))
    server.prepare()
    server.start()
    yield server
    server.stop()


def test_a_user_creates_a_token_and_the_docs_list_every_operation(docs_server):
    from playwright.sync_api import expect, sync_playwright

    with urllib.request.urlopen(f"{docs_server.url}/api/v1/openapi.json", timeout=10) as response:
        described = json.loads(response.read())
    operations = sum(len(item) for item in described["paths"].values())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{docs_server.url}/accounts/login/")
        page.get_by_label("User name").fill("demo")
        page.get_by_label("Password").fill("demo")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Account").get_by_role("link", name="API tokens").click()
        page.wait_for_url("**/account/api-tokens/")
        page.get_by_role("textbox", name="Name", exact=True).fill("Browser test")
        page.get_by_role("button", name="Create token").click()
        token = page.get_by_role("textbox", name="Token", exact=True).input_value()
        assert token.startswith("idk_")
        expect(page.get_by_role("cell", name="Browser test", exact=True)).to_be_visible()
        context.close()

        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        foreign, errors = [], []
        page.on("request", lambda r: None if r.url.startswith(docs_server.url) else foreign.append(r.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        listed = page.request.get(
            f"{docs_server.url}/api/v1/locations", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert [location["id"] for location in listed] == [docs_server.location_id]
        page.goto(f"{docs_server.url}/api/docs/")
        expect(page.locator(".opblock")).to_have_count(operations)
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
        context.close()
        browser.close()
    assert foreign == [], foreign
    assert errors == []
