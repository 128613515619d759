"""Transcript export: `manage.py export_transcripts` and the admin's export actions."""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def transcripts(user, other_user):
    """carol: a finished chat with feedback and a failed answer; dave: a cancelled answer."""
    rust = Conversation.objects.create(owner=user, title="Rust lifetimes")
    Message.objects.create(conversation=rust, role="user", content="What is a lifetime?")
    good = Message.objects.create(
        conversation=rust, role="assistant", content="A **scope**.\n\n```rust\nfn f<'a>() {}\n```", model="m-one",
        ttft_ms=120, tokens=7, duration_ms=820, finish_reason="stop",
    )  # fmt: skip
    Feedback.objects.create(message=good, user=user, rating=Feedback.Rating.UP, comment='clear, "thanks" ✓')
    Message.objects.create(conversation=rust, role="user", content="And 'static?")
    Message.objects.create(
        conversation=rust, role="assistant", content="It lives", status="error", model="m-one", ttft_ms=90, tokens=2,
        duration_ms=400, error_code="upstream_timeout", error_message="No answer within 2 s.", error_recoverable=True,
    )  # fmt: skip
    pizza = Conversation.objects.create(owner=other_user, title="")
    Message.objects.create(conversation=pizza, role="user", content="levain starter")
    stopped = Message.objects.create(
        conversation=pizza, role="assistant", content="Flour and", status="cancelled", model="m-two", ttft_ms=300,
        tokens=3, duration_ms=500, finish_reason="cancelled",
    )  # fmt: skip
    Feedback.objects.create(message=stopped, user=other_user, rating=Feedback.Rating.DOWN)
    return rust, pizza


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_transcripts", *args, stdout=out)
    return out.getvalue()


def records(*args: str) -> list[dict]:
    return [json.loads(line) for line in export(*args).splitlines()]


def expected(conversation: Conversation) -> dict:
    """What the export must say, read back from the database field by field."""
    messages = []
    for m in Message.objects.filter(conversation=conversation).order_by("created_at", "id"):
        feedback = Feedback.objects.filter(message=m).first()
        record = {
            "id": m.pk,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "created_at": m.created_at,
            "stats": m.stats(),
            "feedback": None if feedback is None else {"rating": feedback.rating, "comment": feedback.comment},
        }
        if m.status == "error":
            record["error"] = {"code": m.error_code, "message": m.error_message, "recoverable": m.error_recoverable}
        messages.append(record)
    return {
        "id": conversation.pk,
        "owner": conversation.owner.username,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "messages": messages,
    }


def parsed(record: dict) -> dict:
    """Timestamps back to datetimes, to compare with the database's."""
    for item in (record, *record["messages"]):
        item["created_at"] = datetime.fromisoformat(item["created_at"])
    return record


def test_jsonl_round_trips_every_field_with_stats_and_feedback(transcripts):
    rust, pizza = transcripts
    out = export()
    assert out.endswith("\n") and len(out.splitlines()) == 2  # one conversation a line
    got = [parsed(json.loads(line)) for line in out.splitlines()]
    assert got == [expected(rust), expected(pizza)]
    answer = got[0]["messages"][1]
    assert answer["stats"] == {
        "ttft_ms": 120, "tokens": 7, "duration_ms": 820, "tokens_per_s": 10.0, "finish_reason": "stop",
        "model": "m-one",
    }  # fmt: skip
    assert answer["feedback"] == {"rating": 1, "comment": 'clear, "thanks" ✓'}
    assert got[0]["messages"][0]["stats"] is None and got[0]["messages"][0]["feedback"] is None
    assert got[0]["messages"][3]["error"]["code"] == "upstream_timeout"
    assert got[1]["owner"] == "dave" and got[1]["messages"][1]["feedback"] == {"rating": -1, "comment": ""}


def test_user_filter(transcripts):
    assert [r["owner"] for r in records("--user", "dave")] == ["dave"]
    assert [r["title"] for r in records("--user", "carol")] == ["Rust lifetimes"]
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        export("--user", "nobody")


def test_since_keeps_conversations_with_any_activity_since_that_day(transcripts, user):
    _rust, pizza = transcripts
    long_ago = timezone.now() - timedelta(days=40)
    Conversation.objects.update(updated_at=long_ago)
    Message.objects.update(updated_at=long_ago)
    fresh = Conversation.objects.create(owner=user, title="today")
    since = (timezone.now() - timedelta(days=10)).date().isoformat()
    assert [r["id"] for r in records("--since", since)] == [fresh.pk]
    # An answer that ended (was saved) recently is activity, though the conversation row is old.
    Message.objects.filter(conversation=pizza, role="assistant").update(updated_at=timezone.now())
    assert [r["id"] for r in records("--since", since)] == [pizza.pk, fresh.pk]
    assert [r["id"] for r in records("--since", since, "--user", "carol")] == [fresh.pk]
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        export("--since", "last week")


def test_markdown_has_a_heading_per_conversation_and_each_message_with_role_stats_and_feedback(transcripts):
    _rust, pizza = transcripts
    out = export("--format", "markdown")
    headings = [line for line in out.splitlines() if line.startswith("# ")]
    assert headings == ["# Rust lifetimes", f"# Conversation {pizza.pk}"]
    rust_part = out.split("# Conversation")[0]
    roles = [line.split(" · ")[0] for line in rust_part.splitlines() if line.startswith("## ")]
    assert roles == ["## User", "## Assistant", "## User", "## Assistant"]
    assert "```rust\nfn f<'a>() {}\n```" in rust_part  # the answer's Markdown as it is
    assert "*m-one · first token 120 ms · 7 tokens · 10.0 tokens/s · 820 ms · finish: stop*" in rust_part
    assert '> Feedback: 👍 up: clear, "thanks" ✓' in rust_part
    assert "**Error** `upstream_timeout`: No answer within 2 s." in rust_part
    assert "> Feedback: 👎 down\n" in out.split("# Conversation")[1]


def test_markdown_closes_a_code_fence_an_answer_was_stopped_in(user):
    """Stopped mid-code, an answer ends inside its fence; the export closes it, or every heading
    after it would read as code. Fences the answer closed itself are left as they are."""
    c = Conversation.objects.create(owner=user, title="Stopped in code")
    Message.objects.create(
        conversation=c, role="assistant", status="cancelled", model="m", tokens=4,
        content="Try:\n\n````python\nprint('```')\nx = 1",
    )  # fmt: skip
    Message.objects.create(conversation=c, role="user", content="go on")
    Message.objects.create(conversation=c, role="assistant", content="~~~\ndone\n~~~", model="m", tokens=2)
    out = export("--format", "markdown")
    assert "````python\nprint('```')\nx = 1\n````\n\n*m · 4 tokens*\n\n## User · " in out
    assert "~~~\ndone\n~~~\n\n*m" in out


def test_query_count_grows_with_batches_not_with_messages(user):
    """Two queries a batch (conversations with owners; their messages with feedback), one more to end."""

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            out = export("--batch", "2")
        assert len(out.splitlines()) == 5
        return len(queries)

    conversations = [Conversation.objects.create(owner=user, title=f"c{i}") for i in range(5)]

    def add_messages(n: int) -> None:
        for c in conversations:
            for i in range(n):
                m = Message.objects.create(conversation=c, role="assistant", content=f"a{i}", tokens=1)
                Feedback.objects.create(message=m, user=user, rating=1)

    add_messages(1)
    few = count_queries()
    add_messages(20)
    assert count_queries() == few == 3 * 2 + 1  # batches of 2, 2, 1 conversations, then an empty look


def test_admin_action_downloads_the_selected_conversations_as_json_lines(admin_client, transcripts):
    _rust, pizza = transcripts
    r = admin_client.post("/admin/chat/conversation/", {"action": "export_jsonl", "_selected_action": [str(pizza.pk)]})
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"].startswith("application/x-ndjson")
    assert r["Content-Disposition"].startswith('attachment; filename="transcripts-')
    assert r["Content-Disposition"].endswith('.jsonl"')
    body = b"".join(r.streaming_content).decode()
    assert [parsed(json.loads(line)) for line in body.splitlines()] == [expected(pizza)]


def test_admin_action_downloads_markdown(admin_client, transcripts):
    rust, pizza = transcripts
    ids = [str(rust.pk), str(pizza.pk)]
    r = admin_client.post("/admin/chat/conversation/", {"action": "export_markdown", "_selected_action": ids})
    assert r["Content-Type"].startswith("text/markdown") and r["Content-Disposition"].endswith('.md"')
    body = b"".join(r.streaming_content).decode()
    assert body == export("--format", "markdown")


@pytest.mark.django_db(transaction=True)
async def test_admin_action_streams_asynchronously_under_asgi(admin_user, transcripts):
    """Under ASGI (daphne) the download is an async iterator: a sync one would be read whole first."""
    rust, _pizza = transcripts
    client = AsyncClient()
    await client.aforce_login(admin_user)
    r = await client.post("/admin/chat/conversation/", {"action": "export_jsonl", "_selected_action": [str(rust.pk)]})
    assert r.status_code == 200 and r.is_async
    body = b"".join([chunk async for chunk in r.streaming_content]).decode()
    assert [json.loads(line)["id"] for line in body.splitlines()] == [rust.pk]


def test_admin_action_is_refused_to_non_staff(client, user, transcripts):
    client.force_login(user)
    r = client.post("/admin/chat/conversation/", {"action": "export_jsonl", "_selected_action": ["1", "2"]})
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")
    assert not getattr(r, "streaming", False) and "Rust" not in r.content.decode()


def test_export_of_nothing_is_empty(db):
    assert export() == "" and export("--format", "markdown") == ""


def test_created_at_is_utc_iso_8601(transcripts):
    rust, _ = transcripts
    first = records()[0]
    assert first["created_at"].endswith("+00:00")
    assert datetime.fromisoformat(first["created_at"]).astimezone(UTC) == rust.created_at
