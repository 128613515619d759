"""The upstream's HTTP transport: the SDK's aiohttp transport, with connection errors named right.

Profiling put a third of the per-token CPU in the SDK's default transport (httpx2 over
anyio); its aiohttp transport reads the same bytes for less (docs/backend.md, "Speed"). The
vendored transport maps aiohttp's errors through a table in which every
`ClientConnectionError` comes out as `ConnectTimeout`: a refused connection, and a server that
hangs up mid-answer, would read "timed out" to the user. `renamed` names those by their
cause, before the SDK turns them into its own errors; real timeouts stay timeouts.
"""

import asyncio

import aiohttp
import httpx2  # the HTTP library openai 3 is built on
import openai
from openai._vendor.httpx_aiohttp import AiohttpTransport

# One pool per process: every live answer holds one upstream connection, so the pool must not
# queue a stream behind others (the SDK's default caps at 1000 too); idle ones are kept for reuse.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


def http_client() -> openai.DefaultAioHttpClient:
    return openai.DefaultAioHttpClient(transport=Transport(limits=LIMITS))


def renamed(exc: Exception) -> Exception:
    """The httpx2 error that says what happened, judged by the aiohttp error underneath."""
    cause = exc.__cause__
    if isinstance(cause, asyncio.TimeoutError):
        return exc
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(str(cause))
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx2.ReadError(str(cause))
    return exc


class Transport(AiohttpTransport):
    async def handle_async_request(self, request):
        try:
            response = await super().handle_async_request(request)
        except httpx2.TransportError as exc:
            raise renamed(exc) from exc.__cause__
        response.stream = _Body(response.stream)
        return response


class _Body(httpx2.AsyncByteStream):
    """The response body, with the same renaming for errors while it is read."""

    def __init__(self, stream) -> None:
        self._stream = stream

    async def __aiter__(self):
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx2.TransportError as exc:
            raise renamed(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()
