"""Small page helpers shared by the browser tests."""

from playwright.sync_api import Locator, Page, expect


def words(n: int, start: int = 0) -> list[str]:
    return [f"w{i} " for i in range(start, start + n)]


def norm(text: str) -> str:
    """Whitespace-insensitive text: rendered Markdown and its source differ only in spacing."""
    return " ".join(text.split())


def send(page: Page, text: str) -> None:
    composer = page.get_by_test_id("composer")
    composer.fill(text)
    composer.press("Enter")


def answer(page: Page) -> Locator:
    return page.locator("[data-testid=message][data-role=assistant]").last


def answer_text(page: Page) -> str:
    return answer(page).get_by_test_id("message-text").inner_text()


def wait_status(page: Page, status: str, timeout: float = 15_000) -> None:
    expect(answer(page)).to_have_attribute("data-status", status, timeout=timeout)


def wait_words(page: Page, n: int, timeout: float = 15_000) -> None:
    """Until the streaming answer shows at least n words."""
    page.wait_for_function(
        """n => {
            const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
            const el = all[all.length - 1];
            return el && el.querySelector('[data-testid=message-text]').textContent.split(/\\s+/)
                .filter(Boolean).length >= n;
        }""",
        arg=n,
        timeout=timeout,
    )
