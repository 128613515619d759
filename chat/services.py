"""Writes and actions. Keyword-only, named <entity>_<action>; views call exactly one."""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import Count, Q
from redis.exceptions import RedisError

from . import backplane, generation, limits, llm, recovery, redislog, remote, selectors, shutdown, sse, store, worker
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


# What the server relies on failing under a request: told to the user, never a crash.
FAULTS = (RedisError, DatabaseError)


def fault(exc: Exception) -> ServiceError:
    """The error a user is told for one of FAULTS, the same over HTTP and the WebSocket."""
    if isinstance(exc, RedisError):  # several workers, and what they share is out of reach
        return ServiceError("unavailable", "The server cannot reach Redis; try again shortly.", 503, 5)
    if isinstance(exc, OperationalError):  # the database is down, or every pooled connection stayed busy
        return ServiceError("unavailable", "The database is busy or out of reach; try again shortly.", 503, 5)
    # It refused a write (a constraint, a trigger): nothing was stored.
    return ServiceError("internal_error", "The server could not store this; nothing was saved.", 500)


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


async def answer_start(
    *, user: AbstractBaseUser, conversation_id: int, content: object, parent_id: object = None
) -> Generation:
    """Store the user's message and an empty streaming answer, and start generating it.

    The message follows `parent_id` (an answer of this conversation), by default the last answer
    of the branch on screen (the one through the newest message).
    """
    content = _clean_content(content)
    parent = _clean_id(parent_id, "parent_id")
    return await _start(
        user=user,
        conversation_id=conversation_id,
        plan=functools.partial(_plan_post, content=content, parent_id=parent),
    )


async def answer_regenerate(*, user: AbstractBaseUser, message_id: int) -> Generation:
    """A new answer to the question of the last answer: another version of that turn."""
    answer = await _answer_get(user=user, message_id=message_id)
    return await _start(
        user=user,
        conversation_id=answer.conversation_id,
        plan=functools.partial(_plan_regenerate, answer_id=answer.pk),
    )


async def message_edit(*, user: AbstractBaseUser, message_id: int, content: object) -> Generation:
    """The edited question becomes a new version of its turn, and its answer streams."""
    question = await sync_to_async(selectors.message_get)(user=user, id=message_id)
    if question.role != Message.Role.USER:
        raise ServiceError("not_a_question", "Only your own messages can be edited, not answers.", 400)
    content = _clean_content(content)
    return await _start(
        user=user,
        conversation_id=question.conversation_id,
        plan=functools.partial(_plan_question, parent=question.parent_id, content=content),
    )


async def answer_continue(*, user: AbstractBaseUser, message_id: int) -> tuple[Generation, int]:
    """More of an answer that ended early, as the same message; returns the generation and the
    id of the answer's last event so far (the new events come after it)."""
    answer = await _answer_get(user=user, message_id=message_id)
    if backplane.enabled():
        # Its old Redis log (ending in `done`) must not be read as this run's.
        await backplane.client().delete(redislog.stream_key(answer.pk))
    gen = await _start(
        user=user, conversation_id=answer.conversation_id, plan=functools.partial(_plan_continue, answer_id=answer.pk)
    )
    return gen, gen.resume[1] if gen.resume else 0


async def _start(*, user: AbstractBaseUser, conversation_id: int, plan: Callable) -> Generation:
    """Start an answer in a conversation: limits first, then `plan` under the conversation's lock.

    Every refusal (limits, an answer already streaming, a plan that does not apply) comes before
    anything is stored, and a refused start does not count against the user's messages a minute.
    Once the checks pass, the plan sends the request upstream before it stores the question and
    the answer: the model reads the prompt meanwhile.
    """
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
    upstream = _Upstream()
    try:
        try:
            # Our heartbeat must be fresh before an answer carries our name (other workers check it).
            await worker.ensure_started()
        except RedisError as exc:
            raise _redis_unavailable() from exc
        begin = sync_to_async(_begin)
        plan = functools.partial(plan, send=upstream.send)
        try:
            planned = await begin(user=user, conversation_id=conversation_id, plan=plan)
        except ServiceError as refused:
            # An answer left streaming by a dead worker must not block this conversation. Looked
            # for only when it would matter: the common post pays no query and no Redis call for it.
            if refused.code not in ("answer_in_progress", "too_many_answers") or not await _sweep(conversation_id):
                raise
            planned = await begin(user=user, conversation_id=conversation_id, plan=plan)
    except BaseException:
        await asyncio.shield(_give_back(ticket, upstream))
        raise
    gen = Generation(
        message_id=planned.answer.pk,
        conversation_id=conversation_id,
        user_message_id=planned.question_id,
        model=planned.answer.model,
        prompt=planned.prompt,
        user_id=user.pk,
        upstream=upstream.stream,
        **planned.resumed,
    )
    gen.start()
    return gen


async def _sweep(conversation_id: int) -> int:
    try:
        return await recovery.sweep(conversation_id=conversation_id)
    except RedisError as exc:
        raise _redis_unavailable() from exc


@dataclass
class _Planned:
    """What a start stored, and what it asks the model."""

    question_id: int | None
    answer: Message
    prompt: list[dict]
    resumed: dict = field(default_factory=dict)  # Continue: Generation's earlier frames, parts...


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


class _Upstream:
    """The request a start sends from inside its transaction, once its checks have passed: the
    model reads the prompt while the question and the answer are stored."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._abandoned = False
        # Set before begin() returns: call_soon_threadsafe queues it ahead of begin's result.
        self.stream: llm.EarlyStream | None = None

    def send(self, prompt: list[dict], model: str) -> None:
        """On the sync thread: the request goes out from the event loop."""
        self._loop.call_soon_threadsafe(self._open, prompt, model)

    def _open(self, prompt: list[dict], model: str) -> None:
        if not self._abandoned:  # the start may have been cancelled while its thread wrote on
            self.stream = llm.EarlyStream(prompt, model=model, max_tokens=settings.CHAT_MAX_TOKENS)

    async def abandon(self) -> None:
        self._abandoned = True
        if self.stream is not None:
            await self.stream.aclose()


async def _give_back(ticket: limits.Ticket, upstream: _Upstream) -> None:
    """A start that failed: hang up the request it sent (if it got that far), refund the message."""
    await upstream.abandon()
    await _refund(ticket)


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
def _begin(*, user: AbstractBaseUser, conversation_id: int, plan: Callable) -> _Planned:
    # Lock the user's row, then the conversation's, so that two starts (on any workers) cannot
    # both see room for one more answer (on PostgreSQL; SQLite's IMMEDIATE transactions
    # serialise writers already, and it has no row locks to take).
    if connection.features.has_select_for_update:
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    conversation = selectors.conversation_get(user=user, id=conversation_id, for_update=True)
    # One query for both checks: the user's streaming answers, and those of this conversation.
    streaming = (
        Message.objects.owned_by(user)
        .streaming()
        .aggregate(mine=Count("pk"), here=Count("pk", filter=Q(conversation_id=conversation.pk)))
    )
    if streaming["here"]:
        raise ServiceError(
            "answer_in_progress", "An answer is still streaming in this conversation; stop it first.", 409
        )
    if streaming["mine"] >= settings.CHAT_USER_CONCURRENCY:
        raise ServiceError(
            "too_many_answers",
            f"You have {settings.CHAT_USER_CONCURRENCY} answers streaming already; wait for one to finish.",
            429,
            retry_after=RETRY_BUSY_S,
        )
    planned = plan(conversation)
    conversation.save(update_fields=["title", "updated_at"])
    return planned


def _plan_post(conversation: Conversation, *, content: str, parent_id: int | None, send: Callable) -> _Planned:
    tree = selectors.conversation_tree(conversation=conversation)
    if parent_id is None:
        branch = tree.branch()
        parent = branch[-1] if branch else None
    elif parent_id not in tree.parent:
        raise ServiceError("not_found", f"No message {parent_id} in this conversation.", 404)
    else:
        parent = parent_id
    if parent is not None and tree.role[parent] != Message.Role.ASSISTANT:
        raise ServiceError("invalid_parent", "A message follows an answer.", 400)
    return _plan_question(conversation, parent=parent, content=content, send=send)


def _plan_question(conversation: Conversation, *, parent: int | None, content: str, send: Callable) -> _Planned:
    """A question after `parent` (a new turn, or a new version of one), and its answer."""
    context = selectors.conversation_context(
        conversation=conversation, up_to=parent, budget_chars=max(settings.CHAT_CONTEXT_CHARS - len(content), 0)
    )
    prompt = [*_system(conversation), *context, {"role": "user", "content": content}]
    send(prompt, conversation.answer_model())
    question = conversation.messages.create(role=Message.Role.USER, content=content, parent_id=parent)
    answer = _new_answer(conversation, question_id=question.pk)
    if not conversation.title:
        conversation.title = _title_from(content)
    return _Planned(question.pk, answer, prompt)


def _plan_regenerate(conversation: Conversation, *, answer_id: int, send: Callable) -> _Planned:
    tree = selectors.conversation_tree(conversation=conversation)
    if not tree.is_leaf(answer_id):
        raise ServiceError("not_latest", "Only the last answer of a conversation can be regenerated.", 409)
    question_id = tree.parent[answer_id]
    context = selectors.conversation_context(
        conversation=conversation, up_to=question_id, budget_chars=settings.CHAT_CONTEXT_CHARS
    )
    prompt = [*_system(conversation), *context]
    send(prompt, conversation.answer_model())
    return _Planned(question_id, _new_answer(conversation, question_id=question_id), prompt)


def _plan_continue(conversation: Conversation, *, answer_id: int, send: Callable) -> _Planned:
    answer = conversation.messages.get(pk=answer_id)
    if not _ended_early(answer):
        raise ServiceError(
            "not_continuable", "Only an answer that was stopped, cut off or failed can be continued.", 409
        )
    if not selectors.conversation_tree(conversation=conversation).is_leaf(answer_id):
        raise ServiceError("not_latest", "Only the last answer of a conversation can be continued.", 409)
    earlier = replay_events(answer)
    last_id = earlier[-1][0]  # its `done`: the new events come after it
    frames = {seq: sse.encode_event(seq, name, data) for seq, name, data in earlier if name in ("start", "token")}
    chunks = _stored_chunks(answer)
    context = selectors.conversation_context(
        conversation=conversation,
        up_to=answer.parent_id,
        budget_chars=max(settings.CHAT_CONTEXT_CHARS - len(answer.content), 0),
    )
    prompt = [
        *_system(conversation),
        *context,
        {"role": "assistant", "content": answer.content},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
    send(prompt, answer.model)
    answer.runs = [*answer.runs, [len(chunks), last_id + 1]]
    answer.status, answer.worker = Message.Status.STREAMING, WORKER_ID
    answer.finish_reason = answer.error_code = answer.error_message = ""
    answer.save(
        update_fields=["runs", "status", "worker", "finish_reason", "error_code", "error_message", "updated_at"]
    )
    resumed = {
        # Frames 1..last_id as streamed before (b"" holds the place of the old `error` and `done`).
        "earlier": [frames.get(seq, b"") for seq in range(1, last_id + 1)],
        "parts": chunks,
        "resume": (len(chunks), last_id),
        "tokens": answer.tokens,
        "ttft_ms": answer.ttft_ms,
        "earlier_ms": answer.duration_ms or 0,
    }
    return _Planned(answer.parent_id, answer, prompt, resumed)


# What the model is asked to do on Continue. Every OpenAI-compatible server takes it, unlike a
# trailing assistant message to be extended, which only some templates continue.
CONTINUE_PROMPT = "Continue exactly where your last answer stopped. Do not repeat anything you already wrote."


def _ended_early(answer: Message) -> bool:
    if answer.role != Message.Role.ASSISTANT:
        return False
    ended = (Message.Status.CANCELLED, Message.Status.INTERRUPTED, Message.Status.ERROR)
    return answer.status in ended or (answer.status == Message.Status.COMPLETE and answer.finish_reason == "length")


def _new_answer(conversation: Conversation, *, question_id: int) -> Message:
    return conversation.messages.create(
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=conversation.answer_model(),
        worker=WORKER_ID,
        parent_id=question_id,
    )


def _system(conversation: Conversation) -> list[dict]:
    prompt = conversation.answer_system_prompt()  # its own, or CHAT_SYSTEM_PROMPT
    return [{"role": "system", "content": prompt}] if prompt else []


def _clean_id(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**18:
        raise ServiceError(f"invalid_{name}", f"{name} must be a message id (a positive integer).")
    return value


def clean_text(value: object, name: str, max_chars: int, *, too_long_status: int = 400) -> str:
    """An optional text field (a comment, a system prompt): a string without NUL, trimmed, at
    most `max_chars`; "" when absent. PostgreSQL cannot store NUL in text; SQLite could, so it
    is refused on both."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ServiceError(f"invalid_{name}", f"{name} must be a string.")
    if "\x00" in value:
        raise ServiceError(f"invalid_{name}", f"{name} must not contain NUL characters (U+0000).")
    value = value.strip()
    if len(value) > max_chars:
        raise ServiceError(f"{name}_too_long", f"{name} is longer than {max_chars} characters.", too_long_status)
    return value


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
    if (gen := _own_running(user, message_id)) is not None:
        return await _stop_here(gen, wait=True)
    message = await _answer_get(user=user, message_id=message_id)
    return await _stop(message, wait=True)


def _own_running(user: AbstractBaseUser, message_id: object) -> Generation | None:
    """The user's own answer running in this process: it is stopped straight away, without
    waiting on the database (under load, a read waits its turn for a sync thread)."""
    gen = generation.running(message_id) if isinstance(message_id, int) else None
    return gen if gen is not None and gen.user_id == user.pk else None


async def _stop_here(gen: Generation, *, wait: bool, status: str = Message.Status.CANCELLED) -> str:
    gen.stop(status)
    if wait:
        await gen.wait(timeout=5)
    return gen.status


async def answer_cancel(*, user: AbstractBaseUser, conversation_id: int, message_id: object) -> None:
    """Stop an answer of this conversation (the WebSocket's cancel); its end is announced, not awaited."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise ServiceError("invalid_message_id", "message_id must be an integer.")
    if (gen := _own_running(user, message_id)) is not None and gen.conversation_id == conversation_id:
        await _stop_here(gen, wait=False)
        return
    message = await Message.objects.owned_by(user).filter(pk=message_id, conversation_id=conversation_id).afirst()
    if message is None or message.role != Message.Role.ASSISTANT:
        raise ServiceError("not_found", f"No answer {message_id} in this conversation.", 404)
    await _stop(message, wait=False)


async def _stop(message: Message, *, wait: bool, status: str = Message.Status.CANCELLED) -> str:
    if gen := generation.running(message.pk):
        return await _stop_here(gen, wait=wait, status=status)
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


def replay_events(message: Message) -> list[tuple[int, str, dict]]:
    """A stored answer as the very events it streamed, with their ids: (id, event, data)."""
    events: list[tuple[int, str, dict]] = [
        (
            1,
            "start",
            {
                "message_id": message.pk,
                "conversation_id": message.conversation_id,
                "user_message_id": _user_message_id(message),
                "model": message.model,
            },
        ),
    ]
    chunks = _stored_chunks(message)
    ids = token_ids(len(chunks), message.runs if sum(message.chunks or []) == len(message.content) else [])
    events += [(seq, "token", {"text": text}) for seq, text in zip(ids, chunks, strict=True)]
    last = ids[-1] if ids else 1
    result = store.Result.of(message)  # the same payloads the live stream sent
    if (error := result.error_event()) is not None:
        last += 1
        events.append((last, "error", error))
    events.append((last + 1, "done", result.done_event()))
    return events


def token_ids(count: int, runs: list) -> list[int]:
    """The event ids of an answer's `count` token events: 2, 3, ... and, from each Continue run's
    first chunk on, numbered on from that run's first id."""
    ids, base = [], (0, 2)
    marks = {chunk: first_id for chunk, first_id in runs}
    for k in range(count):
        if k in marks:
            base = (k, marks[k])
        ids.append(base[1] + k - base[0])
    return ids


def replay_frames(message: Message, after: int = 0) -> list[bytes]:
    """A stored answer as the very events it streamed (same ids), after `after`."""
    events = replay_events(message)
    last_id, _, done = events[-1]
    if after >= last_id:
        # The client saw more than was stored (its worker died between checkpoints) or sent a
        # bogus id: repeat `done`, numbered past its id, so that it still learns how it ended.
        return [sse.encode_event(after + 1, "done", done)]
    return [sse.encode_event(seq, name, data) for seq, name, data in events if seq > after]


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
    if message.parent_id is not None:
        return message.parent_id
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
