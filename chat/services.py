"""Writes and actions. Keyword-only, named <entity>_<action>; views call exactly one."""

import asyncio
import logging
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from redis.exceptions import RedisError

from . import backplane, generation, limits, recovery, remote, selectors, shutdown, sse, store, worker
from .backplane import WORKER_ID
from .generation import Generation
from .models import Conversation, Message

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A request the service refuses; views answer it as JSON `{"error": {code, message}}`."""

    def __init__(self, code: str, message: str, status: int = 400, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.retry_after = retry_after  # seconds until asking again may succeed (Retry-After)


# --- conversations ----------------------------------------------------------------------------


def conversation_create(*, user: AbstractBaseUser, title: object = "") -> Conversation:
    return Conversation.objects.create(owner=user, title=_clean_title(title))


async def conversation_delete(*, user: AbstractBaseUser, id: int) -> None:
    """Delete a conversation, stopping any answer still streaming in it first."""
    conversation = await sync_to_async(selectors.conversation_get)(user=user, id=id)
    async for message in conversation.messages.streaming():
        await _stop(message, wait=True)
    await conversation.adelete()


def _clean_title(title: object) -> str:
    if title is None:
        return ""
    if not isinstance(title, str):
        raise ServiceError("invalid_title", "title must be a string.")
    if "\x00" in title:  # PostgreSQL cannot store NUL in text; SQLite could, so refuse it on both
        raise ServiceError("invalid_title", "title must not contain NUL characters (U+0000).")
    title = " ".join(title.split())
    if len(title) > settings.CHAT_MAX_TITLE_CHARS:
        raise ServiceError("title_too_long", f"title is longer than {settings.CHAT_MAX_TITLE_CHARS} characters.")
    return title


# --- answers ----------------------------------------------------------------------------------


async def answer_start(*, user: AbstractBaseUser, conversation_id: int, content: object) -> Generation:
    """Store the user's message and an empty streaming answer, and start generating it.

    Every refusal (bad content, limits, an answer already streaming) comes before anything is
    stored, and a refused post does not count against the user's messages per minute.
    """
    content = _clean_content(content)
    _check_capacity()
    try:
        ticket = await limits.take_message(user.pk)
    except limits.RateLimited as limited:
        raise ServiceError(
            "rate_limited",
            f"You are sending messages too fast (at most {settings.CHAT_USER_RATE_PER_MIN} a minute).",
            429,
            retry_after=limited.retry_after,
        ) from None
    except RedisError as exc:
        raise _redis_unavailable() from exc
    try:
        try:
            # Our heartbeat must be fresh before an answer carries our name (other workers check
            # it), and an answer left streaming by a dead worker must not block this conversation.
            await worker.ensure_started()
            await recovery.sweep(conversation_id=conversation_id)
        except RedisError as exc:
            raise _redis_unavailable() from exc
        user_message, answer, prompt = await sync_to_async(_message_post)(
            user=user, conversation_id=conversation_id, content=content
        )
    except BaseException:
        await asyncio.shield(_refund(ticket))
        raise
    gen = Generation(
        message_id=answer.pk,
        conversation_id=conversation_id,
        user_message_id=user_message.pk,
        model=answer.model,
        prompt=prompt,
    )
    gen.start()
    return gen


def _check_capacity() -> None:
    if shutdown.draining():
        raise ServiceError(
            "draining", "This server is restarting; try again in a moment.", 503, retry_after=RETRY_BUSY_S
        )
    if generation.running_count() >= settings.CHAT_MAX_STREAMS:
        raise ServiceError(
            "server_busy",
            "The server is answering as many questions as it can; try again shortly.",
            503,
            retry_after=RETRY_BUSY_S,
        )


# What a refused post is told to wait: an answer takes seconds, and busy workers are many.
RETRY_BUSY_S = 5


async def _refund(ticket: limits.Ticket) -> None:
    try:
        await ticket.refund()
    except RedisError:
        logger.warning("could not refund a refused post of user %s", ticket.user_id)


def _redis_unavailable() -> ServiceError:
    return ServiceError(
        "unavailable", "The server cannot reach Redis; try again shortly.", 503, retry_after=RETRY_BUSY_S
    )


@transaction.atomic
def _message_post(*, user: AbstractBaseUser, conversation_id: int, content: str) -> tuple[Message, Message, list]:
    # Lock the user's row, then the conversation's, so that two posts (on any workers) cannot
    # both see room for one more answer (on PostgreSQL; SQLite's IMMEDIATE transactions
    # serialise writers already).
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    conversation = selectors.conversation_get(user=user, id=conversation_id, for_update=True)
    if conversation.messages.streaming().exists():
        raise ServiceError(
            "answer_in_progress", "An answer is still streaming in this conversation; stop it first.", 409
        )
    if Message.objects.owned_by(user).streaming().count() >= settings.CHAT_USER_CONCURRENCY:
        raise ServiceError(
            "too_many_answers",
            f"You have {settings.CHAT_USER_CONCURRENCY} answers streaming already; wait for one to finish.",
            429,
            retry_after=RETRY_BUSY_S,
        )
    context = selectors.conversation_context(
        conversation=conversation, budget_chars=max(settings.CHAT_CONTEXT_CHARS - len(content), 0)
    )
    system_prompt = conversation.answer_system_prompt()
    prompt = [
        *([{"role": "system", "content": system_prompt}] if system_prompt else []),
        *context,
        {"role": "user", "content": content},
    ]
    user_message = conversation.messages.create(role=Message.Role.USER, content=content)
    answer = conversation.messages.create(
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=conversation.answer_model(),
        worker=WORKER_ID,
    )
    if not conversation.title:
        conversation.title = _title_from(content)
    conversation.save(update_fields=["title", "updated_at"])
    return user_message, answer, prompt


def _clean_content(content: object) -> str:
    if content is None:
        raise ServiceError("content_required", "content is required.")
    if not isinstance(content, str):
        raise ServiceError("invalid_content", "content must be a string.")
    if "\x00" in content:  # PostgreSQL cannot store NUL in text; SQLite could, so refuse it on both
        raise ServiceError("invalid_content", "content must not contain NUL characters (U+0000).")
    if not content.strip():
        raise ServiceError("content_empty", "content must not be empty.")
    if len(content) > settings.CHAT_MAX_CONTENT_CHARS:
        raise ServiceError(
            "content_too_long", f"content is longer than {settings.CHAT_MAX_CONTENT_CHARS} characters.", 413
        )
    return content


def _title_from(content: str, limit: int = 60) -> str:
    words = " ".join(content.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


async def answer_stop(*, user: AbstractBaseUser, message_id: int) -> str:
    """Stop an answer (idempotent), wherever it runs, and return its status once it is stored."""
    message = await _answer_get(user=user, message_id=message_id)
    return await _stop(message, wait=True)


async def answer_cancel(*, user: AbstractBaseUser, conversation_id: int, message_id: object) -> None:
    """Stop an answer of this conversation (the WebSocket's cancel); its end is announced, not awaited."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise ServiceError("invalid_message_id", "message_id must be an integer.")
    message = await Message.objects.owned_by(user).filter(pk=message_id, conversation_id=conversation_id).afirst()
    if message is None or message.role != Message.Role.ASSISTANT:
        raise ServiceError("not_found", f"No answer {message_id} in this conversation.", 404)
    await _stop(message, wait=False)


async def _stop(message: Message, *, wait: bool, status: str = Message.Status.CANCELLED) -> str:
    if gen := generation.running(message.pk):
        gen.stop(status)
        if wait:
            await gen.wait(timeout=5)
        return gen.status
    if message.status != Message.Status.STREAMING:
        return message.status
    if message.worker == WORKER_ID or not await backplane.worker_alive(message.worker):
        return await recovery.settle_orphan(message)
    # Another live worker runs it: tell that worker, then (for HTTP) wait to see it stored.
    await backplane.request_cancel(message.worker, message.pk, status)
    return await remote.wait_done(message, timeout=5) if wait else message.status


async def answer_follow(*, user: AbstractBaseUser, message_id: int, after: int) -> AsyncIterator[bytes]:
    """The SSE body for a (re)attaching client: live from a log, or replayed from the database.

    Staff with the view permission may follow anyone's answer too (the admin's live view, read-only).
    """
    message = await _answer_get(user=user, message_id=message_id, watch=True)
    if gen := generation.running(message.pk):
        return gen.follow(after)
    if message.status == Message.Status.STREAMING:
        if message.worker != WORKER_ID and await backplane.worker_alive(message.worker):
            return remote.follow(message, after)  # generated on another worker: follow its Redis log
        await recovery.settle_orphan(message)
    return _replay(message, after)


async def _replay(message: Message, after: int) -> AsyncIterator[bytes]:
    yield sse.encode_retry(settings.CHAT_RETRY_MS)
    yield b"".join(await sync_to_async(replay_frames)(message, after))


def replay_frames(message: Message, after: int = 0) -> list[bytes]:
    """A stored answer as the very events it streamed (same ids), after `after`."""
    events: list[tuple[str, dict]] = [
        (
            "start",
            {
                "message_id": message.pk,
                "conversation_id": message.conversation_id,
                "user_message_id": _user_message_id(message),
                "model": message.model,
            },
        ),
    ]
    events += [("token", {"text": text}) for text in _stored_chunks(message)]
    result = store.Result.of(message)  # the same payloads the live stream sent
    if (error := result.error_event()) is not None:
        events.append(("error", error))
    done = result.done_event()
    events.append(("done", done))
    if after >= len(events):
        # The client saw more than was stored (its worker died between checkpoints) or sent a
        # bogus id: repeat `done`, numbered past its id, so that it still learns how it ended.
        return [sse.encode_event(after + 1, "done", done)]
    return [sse.encode_event(seq, name, data) for seq, (name, data) in enumerate(events, 1) if seq > after]


def _stored_chunks(message: Message) -> list[str]:
    content, lengths = message.content, message.chunks or []
    if sum(lengths) != len(content):  # no usable chunk map: one event holds it all
        return [content] if content else []
    chunks, start = [], 0
    for n in lengths:
        chunks.append(content[start : start + n])
        start += n
    return chunks


def _user_message_id(message: Message) -> int | None:
    return (
        Message.objects.filter(conversation_id=message.conversation_id, role=Message.Role.USER, id__lt=message.pk)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )


async def _answer_get(*, user: AbstractBaseUser, message_id: int, watch: bool = False) -> Message:
    message = await sync_to_async(selectors.message_get)(user=user, id=message_id, watch=watch)
    if message.role != Message.Role.ASSISTANT:
        raise ServiceError("not_an_answer", "Only assistant messages stream.", 400)
    return message
