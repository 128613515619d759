"""Admins review transcripts in the Django admin."""

import pytest

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def transcript(user, other_user):
    c = Conversation.objects.create(owner=user, title="Rust lifetimes")
    Message.objects.create(conversation=c, role="user", content="What is a lifetime?")
    Message.objects.create(
        conversation=c, role="assistant", content="A lifetime is a scope.", status="cancelled",
        model="m-one", ttft_ms=120, tokens=7, duration_ms=900, finish_reason="cancelled",
    )  # fmt: skip
    other = Conversation.objects.create(owner=other_user, title="Pizza dough")
    Message.objects.create(conversation=other, role="user", content="levain starter")
    Message.objects.create(conversation=other, role="assistant", content="Flour and water.", model="m-two")
    return c, other


def test_changelist_shows_counts_and_searches_titles_content_and_users(admin_client, transcript):
    page = admin_client.get("/admin/chat/conversation/").content.decode()
    assert "Rust lifetimes" in page and "Pizza dough" in page
    assert "last activity" in page.lower() and "messages" in page.lower()
    for query, shown, hidden in [
        ("levain", "Pizza dough", "Rust lifetimes"),
        ("carol", "Rust lifetimes", "Pizza dough"),
    ]:
        page = admin_client.get("/admin/chat/conversation/", {"q": query}).content.decode()
        assert shown in page and hidden not in page, query


def test_changelist_filters_by_status_and_model(admin_client, transcript):
    page = admin_client.get("/admin/chat/conversation/", {"status": "cancelled"}).content.decode()
    assert "Rust lifetimes" in page and "Pizza dough" not in page
    page = admin_client.get("/admin/chat/conversation/", {"model": "m-two"}).content.decode()
    assert "Pizza dough" in page and "Rust lifetimes" not in page


def test_conversation_page_is_a_read_only_transcript(admin_client, transcript):
    c, _ = transcript
    page = admin_client.get(f"/admin/chat/conversation/{c.pk}/change/").content.decode()
    assert "What is a lifetime?" in page and "A lifetime is a scope." in page
    assert "cancelled" in page and "120" in page
    assert 'name="messages-0-content"' not in page  # shown, not editable
