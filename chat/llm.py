"""The one place that talks to the OpenAI-compatible upstream (embedded SmolLM2, vLLM, OpenAI...)."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import openai
from django.conf import settings


@dataclass(frozen=True)
class UpstreamError(Exception):
    """A failure talking to the upstream, already phrased for the user."""

    code: str
    message: str
    recoverable: bool = True

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Delta:
    """One streamed chunk: some text and, on the last chunk, why the model stopped."""

    text: str = ""
    finish_reason: str | None = None


_client: openai.AsyncOpenAI | None = None


def client() -> openai.AsyncOpenAI:
    """A shared client: one connection pool per process, no SDK retries (we stream once)."""
    global _client
    if _client is None:
        _client = openai.AsyncOpenAI(
            base_url=settings.OPENAI_BASE_URL,
            api_key=settings.OPENAI_API_KEY,
            max_retries=0,
            timeout=openai.Timeout(
                settings.CHAT_UPSTREAM_READ_TIMEOUT_S,
                connect=settings.CHAT_UPSTREAM_CONNECT_TIMEOUT_S,
            ),
        )
    return _client


def reset_client() -> None:
    """Forget the shared client (settings changed, or a new event loop in tests)."""
    global _client
    _client = None


async def stream_chat(messages: list[dict], *, model: str, max_tokens: int) -> AsyncIterator[Delta]:
    """Yield the answer's deltas; the upstream connection is closed when the caller stops."""
    try:
        stream = await client().chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, stream=True
        )
    except openai.APIError as exc:
        raise _translate(exc, started=False) from exc
    finished = False
    surrogates = SurrogateJoiner()
    try:
        async for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            text = surrogates.feed((choice.delta.content if choice.delta else None) or "")
            finished = finished or bool(choice.finish_reason)
            if choice.finish_reason:
                text += surrogates.flush()
            if text or choice.finish_reason:
                yield Delta(text=text, finish_reason=choice.finish_reason)
    except openai.APIError as exc:
        raise _translate(exc, started=True) from exc
    else:
        # Every OpenAI-compatible server ends an answer with a finish_reason. A body that just
        # stops (a close-delimited response cut off) is a broken connection, not an answer.
        if not finished:
            raise UpstreamError("upstream_disconnected", "The model's connection broke mid-answer.")
    finally:
        # Closing the response closes the HTTP connection: the upstream stops generating.
        await stream.close()


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


def _translate(exc: openai.APIError, *, started: bool) -> UpstreamError:
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError("upstream_timeout", "The model stopped responding.")
    if isinstance(exc, openai.APIConnectionError):
        if started:
            return UpstreamError("upstream_disconnected", "The model's connection broke mid-answer.")
        return UpstreamError("upstream_unavailable", f"The model server at {settings.OPENAI_BASE_URL} is unreachable.")
    if isinstance(exc, openai.APIStatusError):
        recoverable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        detail = _status_detail(exc)
        return UpstreamError(
            "upstream_error",
            f"The model server answered HTTP {exc.status_code}: {detail}",
            recoverable=recoverable,
        )
    return UpstreamError("upstream_error", f"The model server failed: {exc.message}")


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
    return (exc.message or "no detail")[:300]
