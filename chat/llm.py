"""The one place that talks to the OpenAI-compatible upstream (embedded SmolLM2, vLLM, OpenAI...)."""

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import openai
import orjson
from django.conf import settings
from openai._constants import RAW_RESPONSE_HEADER
from openai._httpx2 import request_exceptions, timeout_exceptions

from . import metrics, tasks, upstream_http

logger = logging.getLogger(__name__)

TIMEOUT_ERRORS, REQUEST_ERRORS = timeout_exceptions(), request_exceptions()


@dataclass(frozen=True)
class UpstreamError(Exception):
    """A failure talking to the upstream, already phrased for the user (details go to the log)."""

    code: str
    message: str
    recoverable: bool = True
    # Worth another try before the first token: the fault may pass (a timeout, a 503, a 429...).
    retryable: bool = field(default=False, compare=False)
    retry_after: float | None = field(default=None, compare=False)  # the upstream's Retry-After

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Delta:
    """One streamed chunk: some text and, on the last chunk, why the model stopped."""

    text: str = ""
    finish_reason: str | None = None
    count: int = 0  # the upstream chunks with text merged into this one: tokens, near enough


_client: openai.AsyncOpenAI | None = None


def client() -> openai.AsyncOpenAI:
    """A shared client: one connection pool per process, no SDK retries (we stream once)."""
    global _client
    if _client is None:
        _client = openai.AsyncOpenAI(
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
            max_retries=0,
            http_client=upstream_http.http_client(),
            timeout=openai.Timeout(
                settings.CHAT_UPSTREAM_READ_TIMEOUT_S,
                connect=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_S,
            ),
        )
    return _client


def warm_up() -> None:
    """Build the shared client (SSL context, lazy SDK modules) without a request."""
    client()


def reset_client() -> None:
    """Forget the shared client (settings changed, or a new event loop in tests)."""
    global _client
    _client = None


async def close_client() -> None:
    """Close the shared client's connections (shutdown, or the end of a test's event loop)."""
    global _client
    shared, _client = _client, None
    if shared is not None:
        await shared.close()


async def stream_chat(messages: list[dict], *, model: str, max_tokens: int) -> AsyncIterator[Delta]:
    """Yield the answer's deltas; the upstream connection is closed when the caller stops.

    A fault before the first text (no connection, a timeout, 429, 5xx, a body that breaks off)
    is tried again, up to CHAT_UPSTREAM_RETRIES times, after an exponential back-off with full
    jitter, or after the upstream's Retry-After. Once text was shown nothing is retried: the
    user would see the answer start over.
    """
    attempt = 0
    while True:
        shown = False
        try:
            async with aclosing(_stream_once(messages, model=model, max_tokens=max_tokens)) as deltas:
                async for delta in deltas:
                    shown = shown or bool(delta.text)
                    yield delta
            return
        except UpstreamError as exc:
            delay = None if shown else _retry_delay(exc, attempt)
            if delay is None:
                raise
            attempt += 1
            metrics.UPSTREAM_RETRIES.inc()
            logger.info("upstream %s; try %d again in %.2f s", exc.code, attempt + 1, delay)
        # A stop now cancels this sleep: the back-off never delays a Stop.
        await asyncio.sleep(delay)


class EarlyStream:
    """stream_chat(), its request sent now, before anyone reads it.

    A post stores the question and an empty answer after its checks pass; sent first, the request
    is on its way while they are written, and the model's first token comes that much sooner.
    Iterate it as stream_chat(), or aclose() it to hang up (a start that failed after sending).
    """

    def __init__(self, messages: list[dict], *, model: str, max_tokens: int) -> None:
        self.started = time.monotonic()
        self._deltas = stream_chat(messages, model=model, max_tokens=max_tokens)
        # The first step (connect, send, wait for the first delta) runs from now, on its own.
        self._first: asyncio.Task | None = tasks.background(self._step(), name="upstream-request")

    async def _step(self) -> Delta | None:
        try:
            return await anext(self._deltas)
        except StopAsyncIteration:
            return None

    def __aiter__(self) -> "EarlyStream":
        return self

    async def __anext__(self) -> Delta:
        if self._first is None:
            return await anext(self._deltas)
        first, self._first = self._first, None
        delta = await first  # a reader cancelled here cancels the step too: the upstream is hung up
        if delta is None:
            raise StopAsyncIteration
        return delta

    async def aclose(self) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            first.cancel()
            await asyncio.wait({first})
            if not first.cancelled():
                first.exception()  # whatever it was, nobody reads this answer
        await self._deltas.aclose()


def _retry_delay(exc: UpstreamError, attempt: int) -> float | None:
    """Seconds to wait before another try, or None for no more tries."""
    if not exc.retryable or attempt >= settings.CHAT_UPSTREAM_RETRIES:
        return None
    if exc.retry_after is not None:
        # Honour the upstream's wish, unless it asks for longer than a user would wait.
        return exc.retry_after if exc.retry_after <= settings.CHAT_UPSTREAM_RETRY_MAX_S else None
    ceiling = min(settings.CHAT_UPSTREAM_RETRY_MAX_S, settings.CHAT_UPSTREAM_RETRY_BASE_S * 2**attempt)
    return random.uniform(0, ceiling)  # full jitter: many clients retrying do not move in step


async def _stream_once(messages: list[dict], *, model: str, max_tokens: int) -> AsyncIterator[Delta]:
    """One request upstream.

    The SDK makes the request (auth, headers, status errors) but we read its raw body: building
    a pydantic chunk object per token was the largest single cost of relaying a token. Chunks
    that arrive in one read are merged into one Delta, so a busy process sends fewer, larger
    events instead of falling behind; a lone token still goes out at once.
    """
    try:
        # The SDK's generic post (auth, headers, timeouts, status errors) with a plain JSON body:
        # chat.completions.create() first walks the whole prompt through its typed-dict
        # transform, which cost more CPU than the rest of the request. The header asks for the
        # response unread, as with_streaming_response does.
        response = await client().post(
            "/chat/completions",
            cast_to=object,
            body={"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True},
            options={"headers": {RAW_RESPONSE_HEADER: "stream"}},
        )
    except openai.APIError as exc:
        raise _translate(exc) from exc
    chunks = ChunkReader()
    body = response.iter_bytes()
    try:
        async for data in body:
            delta = chunks.feed(data)
            if delta.text or delta.finish_reason:
                yield delta
            if chunks.failure is not None:
                raise chunks.failure  # after the text that came before it in the same read
            if chunks.ended:
                await _drain(body)
                break
    except TIMEOUT_ERRORS as exc:
        raise _timed_out() from exc
    except REQUEST_ERRORS as exc:
        raise _disconnected() from exc
    finally:
        # Closing an unfinished response closes the HTTP connection: the upstream stops generating.
        await response.close()
    if not chunks.finished:
        # Every OpenAI-compatible server ends an answer with a finish_reason. A body that just
        # stops (a close-delimited response cut off) is a broken connection, not an answer.
        raise _disconnected()


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read the few bytes after [DONE] (the body's end): a response read to its end leaves its
    connection to the pool, and the next answer skips a new TCP (and TLS) handshake."""
    try:
        async with asyncio.timeout(DRAIN_S):
            async for _ in body:
                pass
    except (TimeoutError, *TIMEOUT_ERRORS, *REQUEST_ERRORS):
        pass  # the connection is closed instead: nothing lost


DRAIN_S = 1.0


class ChunkReader:
    """The body of a streamed chat completion, as bytes arrive: `data:` lines of JSON chunks.

    Only `data:` lines matter (each holds one whole JSON object; event boundaries do not), so a
    read is cut after its last line break, `\n` or `\r`, and the rest waits for the next read.
    An `error` object, or an `event: error` line's data, is the upstream failing mid-answer.
    """

    def __init__(self) -> None:
        self._rest = b""
        self._error_event = False
        self._surrogates = SurrogateJoiner()
        self.finished = False  # a finish_reason came
        self.ended = False  # [DONE] came: nothing more to read
        self.failure: UpstreamError | None = None  # the upstream failed; nothing after it counts

    def feed(self, data: bytes) -> Delta:
        """Everything in the complete lines so far, as one Delta (maybe empty)."""
        data = self._rest + data
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        self._rest = data[cut:]
        texts: list[str] = []
        finish_reason = None
        for line in data[:cut].splitlines():
            if self.failure is not None:
                break
            if line.startswith(b"data:"):
                try:
                    finish_reason = self._chunk(line[5:].strip(), texts) or finish_reason
                except UpstreamError as failure:
                    self.failure = failure
            elif line.startswith(b"event:"):
                self._error_event = line[6:].strip() == b"error"
        text = self._surrogates.feed("".join(texts))
        if finish_reason:
            text += self._surrogates.flush()
        if "\x00" in text:  # PostgreSQL cannot store NUL in text: the answer could never be saved
            text = text.replace("\x00", "\ufffd")
        return Delta(text=text, finish_reason=finish_reason, count=len(texts))

    def _chunk(self, payload: bytes, texts: list[str]) -> str | None:
        if payload == b"[DONE]" or self.ended:
            self.ended = True
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # orjson refuses a lone surrogate escape (half an emoji per chunk, which some servers
            # send; SurrogateJoiner mends them); the standard decoder takes it.
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise UpstreamError("upstream_bad_chunk", "The model server sent a malformed chunk.") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("upstream_bad_chunk", "The model server sent a malformed chunk.")
        if self._error_event or chunk.get("error"):
            logger.warning("upstream failed mid-answer: %s", _error_message(chunk))
            raise UpstreamError("upstream_error", "The model server failed while answering.", retryable=True)
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return None  # e.g. a usage-only chunk
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(content := delta.get("content"), str) and content:
            texts.append(content)
        finish_reason = choice.get("finish_reason")
        if finish_reason:
            self.finished = True
            return str(finish_reason)
        return None


def _error_message(chunk: dict) -> str:
    error = chunk.get("error", chunk)
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:300] if message else "An error occurred during streaming"


class SurrogateJoiner:
    """Make streamed text valid Unicode.

    An upstream may split an astral character (an emoji) into two JSON `\\u` escapes in two
    chunks, which decode to lone surrogates that cannot be encoded as UTF-8. Hold a trailing
    high surrogate for the next chunk, join pairs, and replace any left alone with U+FFFD.
    """

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> str:
        if text.isascii() and not self._pending:  # the usual case, kept cheap
            return text
        text, self._pending = self._pending + text, ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._pending = text[:-1], text[-1]
        return _fix_surrogates(text)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return _fix_surrogates(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _fix_surrogates(text: str) -> str:
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _timed_out() -> UpstreamError:
    return UpstreamError("upstream_timeout", "The model stopped responding.", retryable=True)


def _disconnected() -> UpstreamError:
    return UpstreamError("upstream_disconnected", "The model's connection broke mid-answer.", retryable=True)


def stalled(seconds: float) -> UpstreamError:
    return UpstreamError("upstream_stalled", f"The model sent nothing for {seconds:g} s; the answer was stopped.")


def _translate(exc: openai.APIError) -> UpstreamError:
    """An SDK error raised before the answer's body is read (mid-answer ones are ours).

    Users get a code and a plain sentence; where the upstream is and what it said go to the log
    (a base URL can name internal hosts, an error body can hold anything).
    """
    if isinstance(exc, openai.APITimeoutError):
        logger.warning("upstream timed out before answering: %s", exc)
        return _timed_out()
    if isinstance(exc, openai.APIConnectionError):
        logger.warning("upstream %s unreachable: %s", settings.OPENAI_BASE_URL, exc.__cause__ or exc)
        return UpstreamError("upstream_unavailable", "The model server is unreachable.", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        logger.warning("upstream answered HTTP %s: %s", status, _status_detail(exc))
        retryable = status in (408, 409, 429) or status >= 500
        return UpstreamError(
            "upstream_error",
            f"The model server refused the request (HTTP {status}): {_STATUS_WORDS.get(status, _class_words(status))}",
            recoverable=retryable,
            retryable=retryable,
            retry_after=_retry_after(exc.response) if retryable else None,
        )
    logger.warning("upstream failed: %s", exc)
    return UpstreamError("upstream_error", "The model server failed.")


_STATUS_WORDS = {
    400: "it could not take this conversation.",
    401: "the server's API key is wrong.",
    403: "the server's API key may not use this model.",
    404: "the model was not found.",
    408: "it timed out.",
    413: "the conversation is too long for it.",
    429: "it is overloaded or out of quota.",
}


def _class_words(status: int) -> str:
    return "it failed; try again shortly." if status >= 500 else "it could not take this request."


def _retry_after(response) -> float | None:
    """Retry-After (seconds or an HTTP date), or the retry-after-ms some APIs send."""
    headers = getattr(response, "headers", None) or {}
    try:
        if ms := headers.get("retry-after-ms"):
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if not value:
            return None
        if value.strip().isascii() and value.strip().replace(".", "", 1).isdigit():
            return float(value)
        when = email.utils.parsedate_to_datetime(value)
        return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return (exc.message or "no detail")[:300]
