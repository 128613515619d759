"""The admin's review tool through Django's test client: the transcript, its query count, the filters
and the message list that jumps into a transcript."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db


def ask(conversation, question: str, answer: str, **fields) -> Message:
    """A user message and its answer; returns the answer."""
    Message.objects.create(conversation=conversation, role="user", content=question)
    return Message.objects.create(conversation=conversation, role="assistant", content=answer, **fields)


def rate(message: Message, rating: int, comment: str = "") -> Feedback:
    return Feedback.objects.create(message=message, user=message.conversation.owner, rating=rating, comment=comment)


def change_url(conversation: Conversation) -> str:
    return f"/admin/chat/conversation/{conversation.pk}/change/"


def rows(page: str, prefix: str) -> set[str]:
    """The titles (or ids) the changelist shows, read from its result rows' links."""
    return set(re.findall(prefix + r'(\d+)/change/[^"]*">', page))


@pytest.fixture
def reviewed(user, other_user):
    """Three conversations: one rated up, one rated down with an error, one without feedback."""
    liked = Conversation.objects.create(owner=user, title="Liked")
    up = ask(liked, "Explain **lifetimes**", "A lifetime is a *scope*.", model="m-one", ttft_ms=120, tokens=40,
             duration_ms=2120, finish_reason="stop")  # fmt: skip
    rate(up, 1, "clear and short")
    disliked = Conversation.objects.create(owner=other_user, title="Disliked")
    down = ask(disliked, "Pizza dough?", "Flour and", status="error", model="m-two", ttft_ms=300, tokens=2,
               duration_ms=900, finish_reason="", error_code="upstream_error",
               error_message="The model went away.")  # fmt: skip
    rate(down, -1, "it stopped halfway")
    quiet = Conversation.objects.create(owner=user, title="Quiet")
    plain = ask(quiet, "Hello", "Hi!", status="cancelled", model="m-one", finish_reason="cancelled")
    return {"liked": liked, "disliked": disliked, "quiet": quiet, "up": up, "down": down, "plain": plain}


# --- the transcript -------------------------------------------------------------------------------


def test_the_transcript_shows_each_answer_with_its_figures_error_and_feedback(admin_client, reviewed):
    page = admin_client.get(change_url(reviewed["disliked"])).content.decode()
    down = reviewed["down"]
    article = page[page.index(f'id="message-{down.pk}"') :]
    article = article[: article.index("</article>")]
    assert 'data-role="assistant"' in article and 'data-status="error"' in article
    assert "Flour and" in article and "m-two" in article and "300 ms" in article
    assert "upstream_error" in article and "The model went away." in article
    assert 'data-rating="down"' in article and "👎" in article and "it stopped halfway" in article
    assert "Pizza dough?" in page  # the question, as a user message before it
    assert page.index("Pizza dough?") < page.index(f'id="message-{down.pk}"')

    page = admin_client.get(change_url(reviewed["liked"])).content.decode()
    assert "👍" in page and "clear and short" in page
    # tokens/s counts from the first token on: 40 tokens in 2000 ms
    assert re.search(r"<dt>tokens/s</dt><dd>20\.0</dd>", page)
    assert "stop" in page and "120 ms" in page


def test_the_transcript_renders_markdown_in_the_browser_from_escaped_text(admin_client, user):
    conversation = Conversation.objects.create(owner=user)
    ask(conversation, "<b>hi</b>", "<script>alert(1)</script> and ```code```")
    page = admin_client.get(change_url(conversation)).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>hi</b>" not in page
    assert "data-markdown" in page  # admin_live.js renders it through marked and DOMPurify
    assert re.search(r'<script type="module" src="/static/chat/js/admin_live\.js">', page)
    assert "/static/chat/css/admin_transcript.css" in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", page), "no inline script: the admin may get a CSP"


def test_the_transcript_replaces_the_old_inline(admin_client, reviewed):
    page = admin_client.get(change_url(reviewed["liked"])).content.decode()
    assert 'name="messages-0-content"' not in page and "messages-TOTAL_FORMS" not in page
    assert 'id="transcript"' in page


def test_a_long_conversation_costs_the_same_queries_as_a_short_one(admin_client, user, django_assert_max_num_queries):
    """No query per message: 20 and 200 messages (with feedback on some) cost the same."""

    def conversation_of(n: int) -> Conversation:
        c = Conversation.objects.create(owner=user, title=f"{n} messages")
        for i in range(n // 2):
            answer = ask(c, f"question {i}", f"answer {i}", model="m-one", tokens=i, ttft_ms=10, duration_ms=100)
            if i % 3 == 0:
                rate(answer, 1 if i % 2 else -1, f"comment {i}")
        return c

    counts = {}
    for n in (20, 200):
        c = conversation_of(n)
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(change_url(c))
        assert response.status_code == 200
        assert response.content.decode().count('data-testid="message"') == n
        assert response.content.decode().count('data-testid="feedback"') == len(range(0, n // 2, 3))
        counts[n] = len(queries)
    assert counts[200] == counts[20], counts
    with django_assert_max_num_queries(counts[20]):
        admin_client.get(change_url(c))


def test_staff_with_the_view_permission_get_the_live_view(client, django_user_model, reviewed):
    reviewer = django_user_model.objects.create_user("reviewer", password="x", is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(reviewer)
    page = client.get(change_url(reviewed["liked"])).content.decode()
    assert 'data-watch="true"' in page and "Liked" in page
    assert 'name="title"' not in page  # a viewer cannot edit


def test_staff_who_may_only_change_conversations_get_no_live_view(client, django_user_model, reviewed):
    editor = django_user_model.objects.create_user("editor", password="x", is_staff=True)
    editor.user_permissions.add(Permission.objects.get(codename="change_conversation"))
    client.force_login(editor)
    page = client.get(change_url(reviewed["liked"])).content.decode()
    assert 'data-watch="false"' in page  # the streams would refuse them: the page does not try


# --- filters on conversations ---------------------------------------------------------------------


def test_the_message_list_shows_each_answers_time_to_first_token_and_tokens(admin_client, reviewed):
    down = reviewed["down"]
    Message.objects.filter(pk=down.pk).update(ttft_ms=412, tokens=57)
    page = admin_client.get("/admin/chat/message/").content.decode()
    row = page[page.index(f"#message-{down.pk}") :]
    row = row[: row.index("</tr>")]
    assert '"field-first_token">412 ms<' in row and '"field-tokens">57<' in row
    assert "first token" in page.lower()  # the column's header; it sorts by the stored value
    assert admin_client.get("/admin/chat/message/", {"o": "8"}).status_code == 200


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({"feedback": "up"}, {"liked"}),
        ({"feedback": "down"}, {"disliked"}),
        ({"feedback": "any"}, {"liked", "disliked"}),
        ({"feedback": "none"}, {"quiet"}),
        ({"status": "error"}, {"disliked"}),
        ({"status": "cancelled"}, {"quiet"}),
        ({"status": "complete"}, {"liked"}),  # the user messages' "complete" does not count
        ({"model": "m-one"}, {"liked", "quiet"}),
        ({"model": "m-one", "feedback": "none"}, {"quiet"}),
        ({}, {"liked", "disliked", "quiet"}),
    ],
)
def test_conversations_filter_by_feedback_status_and_model(admin_client, reviewed, query, shown):
    page = admin_client.get("/admin/chat/conversation/", query).content.decode()
    ids = rows(page, "/admin/chat/conversation/")
    assert ids == {str(reviewed[name].pk) for name in shown}


def test_conversations_filter_by_date(admin_client, reviewed):
    old = reviewed["quiet"]
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    week_ago = str(timezone.now() - timedelta(days=7))
    page = admin_client.get("/admin/chat/conversation/", {"created_at__gte": week_ago})
    assert rows(page.content.decode(), "/admin/chat/conversation/") == {
        str(reviewed["liked"].pk),
        str(reviewed["disliked"].pk),
    }
    page = admin_client.get("/admin/chat/conversation/").content.decode()
    assert "👍 1" in page and "👎 1" in page  # the feedback column


# --- the message list -----------------------------------------------------------------------------


def test_message_rows_open_the_message_in_its_transcript(admin_client, reviewed):
    page = admin_client.get("/admin/chat/message/").content.decode()
    down = reviewed["down"]
    link = f'href="/admin/chat/conversation/{down.conversation_id}/change/#message-{down.pk}"'
    assert link in page
    assert f'href="/admin/chat/message/{down.pk}/change/"' not in page
    transcript = admin_client.get(f"/admin/chat/conversation/{down.conversation_id}/change/").content.decode()
    assert f'id="message-{down.pk}"' in transcript  # the anchor the link jumps to


def test_the_message_list_shows_feedback_and_status(admin_client, reviewed):
    page = admin_client.get("/admin/chat/message/").content.decode()
    row = page[page.index(f"#message-{reviewed['down'].pk}") :]
    row = row[: row.index("</tr>")]
    assert 'data-rating="down"' in row and "it stopped halfway" in row and '"field-status">Error<' in row


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ({"feedback": "down"}, {"down"}),
        ({"feedback": "up"}, {"up"}),
        ({"feedback": "any"}, {"up", "down"}),
        ({"feedback": "none"}, {"plain"}),  # answers without feedback; questions never have any
        ({"status": "error"}, {"down"}),
        ({"status": "cancelled"}, {"plain"}),
        ({"model": "m-two"}, {"down"}),
        ({"role__exact": "assistant", "model": "m-one"}, {"up", "plain"}),
    ],
)
def test_messages_filter_by_feedback_status_and_model(admin_client, reviewed, query, shown):
    page = admin_client.get("/admin/chat/message/", query).content.decode()
    ids = set(re.findall(r"#message-(\d+)\"", page))
    assert ids == {str(reviewed[name].pk) for name in shown}


def test_messages_filter_by_date(admin_client, reviewed):
    Message.objects.filter(pk=reviewed["up"].pk).update(created_at=timezone.now() - timedelta(days=40))
    week_ago = str(timezone.now() - timedelta(days=7))
    page = admin_client.get("/admin/chat/message/", {"feedback": "any", "created_at__gte": week_ago}).content.decode()
    assert set(re.findall(r"#message-(\d+)\"", page)) == {str(reviewed["down"].pk)}


def test_the_message_list_costs_the_same_queries_for_more_rows(admin_client, reviewed, user):
    with CaptureQueriesContext(connection) as few:
        admin_client.get("/admin/chat/message/")
    c = Conversation.objects.create(owner=user)
    for i in range(30):
        rate(ask(c, f"q{i}", f"a{i}", model="m-one"), -1, "meh")
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get("/admin/chat/message/").content.decode()
    assert page.count("👎") >= 31
    assert len(many) == len(few)


def test_versions_of_a_turn_are_labelled_with_the_message_they_follow(admin_client, user):
    conversation = Conversation.objects.create(owner=user, title="versions")
    question = conversation.messages.create(role="user", content="pick a colour")
    first = conversation.messages.create(role="assistant", content="red", parent=question)
    second = conversation.messages.create(role="assistant", content="blue", parent=question)
    page = admin_client.get(change_url(conversation)).content.decode()
    labels = re.findall(r'data-testid="version-label"[^>]*>version (\d)/(\d)<', page)
    assert labels == [("1", "2"), ("2", "2")]  # the two answers; the question has one version
    for answer in (first, second):
        article = page[page.index(f'id="message-{answer.pk}"') :]
        assert f'href="#message-{question.pk}"' in article[: article.index("</header>")]
