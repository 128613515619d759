"""Browser fixtures: Debian's Chromium driven by Playwright against the live daphne app.

Reuses `live` and `upstream` from tests/conftest.py. Never skips: a missing browser fails.
"""

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.browser.chromium import launch_chromium
from tests.browser.chromium import login as login_as
from tests.conftest import PASSWORD

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def login(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in as a test user (the password all test users share) through the login form."""
    login_as(page, base_url, username, password)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def alice_state(browser, live, tmp_path_factory) -> str:
    """alice's signed-in browser storage, made once through the real login form."""
    context = browser.new_context()
    page = context.new_page()
    login(page, live.base_url, "alice")
    path = str(tmp_path_factory.mktemp("browser") / "alice.json")
    context.storage_state(path=path)
    context.close()
    return path


@pytest.fixture
def context(browser, live, alice_state, upstream) -> BrowserContext:
    context = browser.new_context(storage_state=alice_state, viewport={"width": 1200, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.base_url)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context, live) -> Page:
    """alice on a fresh chat page; page errors fail the test."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live.base_url}/")
    page.get_by_test_id("composer").wait_for()
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
