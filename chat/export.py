"""Transcripts out of the database: JSON Lines (one conversation a line) or Markdown, streamed.

Conversations are read by id in batches of BATCH, each batch with two queries (the conversations
with their owners, then their messages with feedback), so memory stays flat and the query count
grows with batches, never with messages. `chunks()` yields one string per batch; `achunks()` is the
same for an ASGI response (a sync iterator there would be read whole before anything is sent).
"""

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator

from asgiref.sync import sync_to_async
from django.db.models import Prefetch, QuerySet

from .models import Conversation, Feedback, Message
from .serializers import feedback_brief

BATCH = 200
FORMATS = ("jsonl", "markdown")
CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "markdown": "text/markdown; charset=utf-8"}
EXTENSIONS = {"jsonl": "jsonl", "markdown": "md"}


def batches(conversations: QuerySet[Conversation], size: int = BATCH) -> Iterator[list[Conversation]]:
    """The conversations by id, `size` at a time, owners and messages (with feedback) loaded."""
    messages = Message.objects.select_related("feedback").defer("chunks", "worker").order_by("created_at", "id")
    query = (
        conversations.order_by("pk").select_related("owner").prefetch_related(Prefetch("messages", queryset=messages))
    )
    after = 0
    while True:
        batch = list(query.filter(pk__gt=after)[:size])
        if not batch:
            return
        yield batch
        after = batch[-1].pk


def conversation_record(conversation: Conversation) -> dict:
    """One conversation as a JSON Lines record."""
    return {
        "id": conversation.pk,
        "owner": conversation.owner.get_username(),
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "messages": [message_record(m) for m in conversation.messages.all()],
    }


def message_record(message: Message) -> dict:
    record = {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
        "stats": message.stats(),
        "feedback": feedback_brief(message),
    }
    if message.status == Message.Status.ERROR or message.error_code:
        record["error"] = {
            "code": message.error_code,
            "message": message.error_message,
            "recoverable": message.error_recoverable,
        }
    return record


def jsonl(conversation: Conversation) -> str:
    return json.dumps(conversation_record(conversation), ensure_ascii=False) + "\n"


def markdown(conversation: Conversation) -> str:
    """A heading per conversation, then each message: its role, its text, a stats line and feedback."""
    title = conversation.title or f"Conversation {conversation.pk}"
    lines = [
        f"# {_one_line(title)}",
        "",
        f"Conversation {conversation.pk} · {conversation.owner.get_username()} · "
        f"started {conversation.created_at:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    for message in conversation.messages.all():
        lines += [f"## {message.role.capitalize()} · {message.status} · {message.created_at:%Y-%m-%d %H:%M:%S}", ""]
        lines += [fences_closed(message.content) or "*(empty)*", ""]
        if (stats := message.stats()) is not None:
            lines += [f"*{stats_line(stats)}*", ""]
        if message.error_code:
            lines += [f"**Error** `{message.error_code}`: {_one_line(message.error_message)}", ""]
        if (feedback := feedback_brief(message)) is not None:
            thumb = "👍 up" if feedback["rating"] == Feedback.Rating.UP else "👎 down"
            comment = f": {_one_line(feedback['comment'])}" if feedback["comment"] else ""
            lines += [f"> Feedback: {thumb}{comment}", ""]
    lines.append("---\n\n")
    return "\n".join(lines)


# A CommonMark code fence: up to three spaces, then three or more backticks or tildes.
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def fences_closed(text: str) -> str:
    """The message's Markdown as it is, with a code fence it left open closed after it.

    An answer stopped mid-code ends inside its fence: left open, the fence would take every
    heading and message after it into one code block."""
    fence = ""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        marks, rest = match.groups()
        if not fence:
            if not (marks[0] == "`" and "`" in rest):  # an info string may not hold a backtick
                fence = marks
        elif marks[0] == fence[0] and len(marks) >= len(fence) and not rest.strip():
            fence = ""
    return f"{text}\n{fence}" if fence else text


def stats_line(stats: dict) -> str:
    parts = [stats["model"] or "unknown model"]
    if stats["ttft_ms"] is not None:
        parts.append(f"first token {stats['ttft_ms']} ms")
    parts.append(f"{stats['tokens']} tokens")
    if stats["tokens_per_s"] is not None:
        parts.append(f"{stats['tokens_per_s']} tokens/s")
    if stats["duration_ms"] is not None:
        parts.append(f"{stats['duration_ms']} ms")
    if stats["finish_reason"]:
        parts.append(f"finish: {stats['finish_reason']}")
    return " · ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


RENDERERS: dict[str, Callable[[Conversation], str]] = {"jsonl": jsonl, "markdown": markdown}


def chunks(conversations: QuerySet[Conversation], fmt: str = "jsonl", size: int = BATCH) -> Iterator[str]:
    """The export as text, one chunk per batch of conversations."""
    render = RENDERERS[fmt]
    for batch in batches(conversations, size):
        yield "".join(render(c) for c in batch)


async def achunks(conversations: QuerySet[Conversation], fmt: str = "jsonl", size: int = BATCH) -> AsyncIterator[str]:
    """chunks() for an async response: each batch read in Django's thread for the ORM."""
    source = chunks(conversations, fmt, size)
    done = object()
    while (chunk := await sync_to_async(next)(source, done)) is not done:
        yield chunk
