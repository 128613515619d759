"""Retention: `manage.py purge_transcripts` deletes conversations idle longer than the period, in batches."""

import io
import sqlite3
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Conversation, Feedback, Message
from tests.live import EventStream

pytestmark = pytest.mark.django_db


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_transcripts", *args, stdout=out)
    return out.getvalue()


def conversation(owner, *, idle_days: float, title: str = "", status: str = "complete") -> Conversation:
    """A question and its answer (with feedback), last active `idle_days` ago."""
    c = Conversation.objects.create(owner=owner, title=title)
    Message.objects.create(conversation=c, role="user", content="q")
    answer = Message.objects.create(conversation=c, role="assistant", content="a", status=status, tokens=1)
    Feedback.objects.create(message=answer, user=owner, rating=1)
    then = timezone.now() - timedelta(days=idle_days)
    Conversation.objects.filter(pk=c.pk).update(updated_at=then)
    Message.objects.filter(conversation=c).update(updated_at=then)
    return c


def titles() -> list[str]:
    return sorted(Conversation.objects.values_list("title", flat=True))


def test_deletes_conversations_idle_longer_than_the_period_with_their_messages_and_feedback(user, other_user):
    conversation(user, idle_days=40, title="old")
    conversation(other_user, idle_days=31, title="old too")
    conversation(user, idle_days=29, title="recent")
    assert purge("--older-than", "30").startswith("deleted 2 conversations idle since before ")
    assert titles() == ["recent"]
    assert Message.objects.count() == 2 and Feedback.objects.count() == 1


def test_an_old_conversation_with_recent_activity_is_kept(user):
    """A post bumps the conversation; an answer that ended later bumps only its message: both count."""
    c = conversation(user, idle_days=40, title="answer ended lately")
    Message.objects.filter(conversation=c, role="assistant").update(updated_at=timezone.now() - timedelta(days=2))
    conversation(user, idle_days=40, title="idle")
    assert purge("--older-than", "30").startswith("deleted 1 conversation idle")
    assert titles() == ["answer ended lately"]


def test_never_deletes_a_conversation_whose_answer_is_still_streaming(user):
    conversation(user, idle_days=90, title="streaming", status="streaming")
    assert purge("--older-than", "30").startswith("deleted 0 conversations")
    assert titles() == ["streaming"]


def test_the_setting_is_the_default_and_neither_is_a_clear_error(user, settings):
    conversation(user, idle_days=10, title="ten days")
    settings.CHAT_RETENTION_DAYS = None
    with pytest.raises(CommandError, match="pass --older-than DAYS or set CHAT_RETENTION_DAYS"):
        purge()
    settings.CHAT_RETENTION_DAYS = 30
    assert purge().startswith("deleted 0 conversations")
    settings.CHAT_RETENTION_DAYS = 7
    assert purge().startswith("deleted 1 conversation ")
    assert titles() == []


def test_the_flag_wins_over_the_setting(user, settings):
    settings.CHAT_RETENTION_DAYS = 5
    conversation(user, idle_days=10, title="ten days")
    assert purge("--older-than", "30").startswith("deleted 0")
    assert titles() == ["ten days"]


def test_dry_run_counts_and_deletes_nothing(user):
    conversation(user, idle_days=40, title="a")
    conversation(user, idle_days=50, title="b")
    assert purge("--older-than", "30", "--dry-run").startswith("would delete 2 conversations")
    assert titles() == ["a", "b"]


def test_nonsense_periods_are_refused(user):
    with pytest.raises(CommandError, match="at least 1 day"):
        purge("--older-than", "0")


def test_deletes_in_batches_each_in_a_transaction_of_its_own(user):
    for i in range(7):
        conversation(user, idle_days=40, title=f"c{i}")
    with CaptureQueriesContext(connection) as queries:
        assert purge("--older-than", "30", "--batch", "3").startswith("deleted 7 conversations")
    # Inside the test's transaction each atomic block is a savepoint: 3 + 3 + 1.
    assert sum(q["sql"].startswith("SAVEPOINT") for q in queries) == 3
    assert titles() == []


def test_purge_beside_the_running_app_spares_a_streaming_answer(live, upstream):
    """From cron while the app serves: an answer streaming in a conversation that looks idle (its rows
    backdated mid-stream) is left alone and finishes and is stored; an idle one beside it goes."""
    client = live.new_client("rita")
    idle = client.new_conversation("idle one")
    with client.post_stream(idle, "hello") as r:
        EventStream(r).events()
    busy = client.new_conversation("busy one")
    upstream.push(tokens=40, rate=20)
    with client.post_stream(busy, "a long one") as r:
        stream = EventStream(r)
        stream.events(limit=3)
        with sqlite3.connect(live.db_path) as db:
            for table, column in (("chat_conversation", "id"), ("chat_message", "conversation_id")):
                db.execute(
                    f"UPDATE {table} SET updated_at = datetime('now', '-60 days') WHERE {column} IN (?, ?)",
                    (idle, busy),
                )
        assert live.manage("purge_transcripts", "--older-than", "30").startswith("deleted 1 conversation ")
        events = stream.events()
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    assert client.http.get(f"/api/conversations/{idle}/").status_code == 404
    answer = client.answer(busy)
    assert answer["status"] == "complete" and answer["content"] == "".join(f"w{i} " for i in range(40))
