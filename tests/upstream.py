"""A scripted OpenAI-compatible server on loopback, for tests and benchmarks.

It speaks just enough HTTP/1.1 for the real `openai` client: `GET /v1/models` and streaming
`POST /v1/chat/completions`. Each request plays a `Script` (token count and rate, delay to the
first token, HTTP error, error or dropped connection or stall after N tokens) and leaves a
`Record`, including the moment the client closed the connection: a concurrent read sees EOF at
once, even while the server is stalling.
"""

import asyncio
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Script:
    tokens: int | list[str] = 20
    rate: float = 0.0  # tokens per second; 0 sends them back to back
    first_delay: float = 0.0
    status: int = 200  # anything else answers at once with a JSON error body
    retry_after: str | None = None  # a Retry-After header on that error
    error_after: int | None = None  # send an SSE error chunk after N tokens
    drop_after: int | None = None  # close the connection abruptly after N tokens
    stall_after: int | None = None  # go silent (connection open) after N tokens
    finish_reason: str = "stop"

    def texts(self) -> list[str]:
        if isinstance(self.tokens, list):
            return self.tokens
        return [f"w{i} " for i in range(self.tokens)]


@dataclass
class Record:
    body: dict
    opened: float
    tokens_sent: int = 0
    client_closed_at: float | None = None  # time.monotonic() when the client hung up
    completed: bool = False

    @property
    def prompt(self) -> list[dict]:
        return self.body.get("messages", [])


@dataclass
class ScriptedUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    default: Script = field(default_factory=Script)
    named: dict[str, Script] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["scripted"])  # what GET /v1/models lists
    models_status: int = 200  # anything else answers GET /v1/models with that error
    models_requests: int = 0  # GET /v1/models served so far
    _queue: deque = field(default_factory=deque)

    # --- control, from the test's thread ---------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def push(self, **script) -> None:
        """The next request plays this script (requests without a queued one play `default`)."""
        self._queue.append(Script(**script))

    def name(self, name: str, **script) -> None:
        """Requests whose last user message contains `[script:NAME]` play this script."""
        self.named[name] = Script(**script)

    def reset(self) -> None:
        self._queue.clear()
        self.named.clear()
        self.records.clear()
        self.default = Script()
        self.models = ["scripted"]
        self.models_status = 200
        self.models_requests = 0

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := predicate():
                return result
            time.sleep(0.005)
        raise AssertionError(f"upstream: timed out waiting for {what}")

    def last(self, timeout: float = 10.0) -> Record:
        return self.wait_for(lambda: self.records[-1] if self.records else None, timeout, "a request")

    def start(self) -> "ScriptedUpstream":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="scripted-upstream")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted upstream did not start")
        return self

    def stop(self) -> None:
        if getattr(self, "_loop", None):
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(5)

    # --- the server, in its own thread and loop -------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stopping.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, body = await _read_request(reader)
            if method == "GET" and path.endswith("/models"):
                self.models_requests += 1
                if self.models_status != 200:
                    await _send_json(writer, self.models_status, {"error": {"message": "scripted failure"}})
                else:
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "tests"} for m in self.models]
                    await _send_json(writer, 200, {"object": "list", "data": data})
            elif method == "POST" and path.endswith("/chat/completions"):
                await self._complete(reader, writer, json.loads(body or b"{}"))
            else:
                await _send_json(writer, 404, {"error": {"message": "not found"}})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _script_for(self, body: dict) -> Script:
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        if users and (m := re.search(r"\[script:([\w-]+)\]", users[-1] or "")) and m[1] in self.named:
            return self.named[m[1]]
        return self._queue.popleft() if self._queue else self.default

    async def _complete(self, reader, writer, body: dict) -> None:
        script = self._script_for(body)
        record = Record(body=body, opened=time.monotonic())
        self.records.append(record)
        if script.status != 200:
            headers = {"Retry-After": script.retry_after} if script.retry_after is not None else {}
            await _send_json(
                writer, script.status, {"error": {"message": f"scripted failure {script.status}"}}, headers
            )
            return
        hangup = asyncio.ensure_future(reader.read(1))  # EOF the moment the client closes

        def hung_up(read: asyncio.Future) -> None:
            # Noted as it happens, a reset too (a client closing with unread data sends RST, which
            # may otherwise surface only as a failed write, and unretrieved).
            if not read.cancelled():
                read.exception()
                record.client_closed_at = record.client_closed_at or time.monotonic()

        hangup.add_done_callback(hung_up)

        async def pause(seconds: float) -> bool:
            """Sleep; False if the client hung up meanwhile."""
            if not hangup.done():
                await asyncio.wait({hangup}, timeout=seconds)
            if hangup.done():
                record.client_closed_at = record.client_closed_at or time.monotonic()
                return False
            return True

        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        model = body.get("model", "scripted")
        if not await pause(script.first_delay):
            return
        for i, text in enumerate(script.texts()):
            if i == script.stall_after:
                await pause(3600)
                return
            if i == script.drop_after:
                writer.transport.abort()
                return
            if i == script.error_after:
                writer.write(_sse({"error": {"message": "scripted mid-stream failure", "type": "server_error"}}))
                await writer.drain()
                return
            if i and script.rate and not await pause(1 / script.rate):
                return
            writer.write(_sse(_chunk(model, {"content": text})))
            record.tokens_sent += 1
            await writer.drain()
            if hangup.done():
                record.client_closed_at = record.client_closed_at or time.monotonic()
                return
        writer.write(_sse(_chunk(model, {}, script.finish_reason)) + b"data: [DONE]\n\n")
        await writer.drain()
        record.completed = True
        hangup.cancel()


def _chunk(model: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    length = int(headers.get("content-length", 0))
    body = await reader.readexactly(length) if length else b""
    return method, path, body


async def _send_json(writer: asyncio.StreamWriter, status: int, data: dict, headers: dict | None = None) -> None:
    payload = json.dumps(data).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        f"HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()


def main() -> None:
    """Run standalone (for benchmarks, in a process of its own): prints the port, serves until killed."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    server = ScriptedUpstream(port=args.port, default=Script(tokens=args.tokens, rate=args.rate)).start()
    print(server.port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
