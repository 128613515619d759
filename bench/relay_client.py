"""A lean load client for bench/relay.py: many SSE streams on raw asyncio sockets, no HTTP library.

Each stream is one `asyncio.Protocol` speaking just enough HTTP/1.1 (one request, `Connection: close`,
chunked or close-delimited body) and SSE (blocks split on an empty line, LF endings as every server
here writes them; `event:` and `data:` read, one `json.loads` per event). It notes when each token
event arrives, so per token it costs one parse and one clock read: far less than a server spends
relaying it (the report prints both).

Runs as a worker process of its own (`python -m bench.relay_client`): one JSON job a line on stdin,
one JSON result a line on stdout. Several workers share a start time by `time.monotonic()`, which on
Linux is one clock for every process, so streams started by two workers interleave as planned and
the upstream's close times (also `time.monotonic()`) compare with the client's cancel times.

A job: {"host", "port", "dialect": "openai"|"text"|"chatsite", "stop": "close"|"post"|"ws", "headers": str,
"timeout": s, "streams": [{"path", "body", "start_at", "stop_after"?, "repeat_until"?, "tag"?, "conv"?}]}.
"""

import asyncio
import base64
import json
import os
import sys
import time

# --- HTTP, just enough ------------------------------------------------------------------------


def request_bytes(method: str, host: str, port: int, path: str, headers: str = "", body: bytes = b"") -> bytes:
    """One HTTP/1.1 request; `headers` are extra "Name: value\\r\\n" lines (cookie, CSRF)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
    )
    return head.encode() + body


def parse_head(head: bytes) -> tuple[int, bool]:
    """The status code, and whether the body is chunked."""
    lines = head.split(b"\r\n")
    chunked = any(line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower() for line in lines[1:])
    return int(lines[0].split(b" ", 2)[1]), chunked


def dechunk(raw: bytearray) -> tuple[bytes, bool]:
    """Remove the complete chunks from the front of `raw`: their data, and whether the last chunk came."""
    out = []
    while (eol := raw.find(b"\r\n")) >= 0:
        size = int(raw[:eol].split(b";", 1)[0], 16)
        if size == 0:
            del raw[:]
            return b"".join(out), True
        end = eol + 2 + size
        if len(raw) < end + 2:  # wait for the whole chunk (servers write one chunk per event)
            break
        out.append(bytes(raw[eol + 2 : end]))
        del raw[: end + 2]
    return b"".join(out), False


async def fetch(
    host: str, port: int, method: str, path: str, headers: str = "", body: bytes = b""
) -> tuple[int, bytes]:
    """A whole request and response (set-up, cancels, reading stored answers): status and body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request_bytes(method, host, port, path, headers, body))
        raw = await reader.read()
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, chunked = parse_head(head)
    return status, dechunk(bytearray(rest))[0] if chunked else rest


# --- a WebSocket, just enough to send a frame (the page's Stop) --------------------------------


async def ws_open(host: str, port: int, path: str, headers: str) -> asyncio.StreamWriter:
    """A WebSocket upgraded and ready to send; what the server sends on it is never read."""
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}:{port}\r\n{headers}\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        writer.close()
        raise ConnectionError(f"websocket refused: {status.decode(errors='replace')}")
    return writer


def ws_text_frame(text: str) -> bytes:
    """One masked text frame (a client must mask what it sends)."""
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


# --- one stream -------------------------------------------------------------------------------


class Stream(asyncio.Protocol):
    """One streaming request and what arrived: token times, text, the ending."""

    def __init__(self, job: dict, spec: dict, started: float):
        self.job, self.spec = job, spec
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.head = bytearray()
        self.raw = bytearray()  # chunked body not yet decoded
        self.sse = bytearray()  # decoded body not yet split into events
        self.chunked = None  # unknown until the head is in
        self.transport: asyncio.Transport | None = None
        self.result = {
            "tag": spec.get("tag"),
            "conv": spec.get("conv"),
            "start": started,
            "first": None,
            "end": None,
            "gaps": [],
            "events": 0,
            "status": None,
            "error": None,
            "message_id": None,
            "stop_sent": None,
        }
        self.parts: list[str] = []
        self.last = 0.0
        self.ws: asyncio.StreamWriter | None = None  # the conversation's WebSocket, for a Stop sent over it
        self.timer = asyncio.get_running_loop().call_later(job.get("timeout", 60), self.finish, None, "timeout")

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        host, port = self.job["host"], self.job["port"]
        transport.write(request_bytes("POST", host, port, self.spec["path"], self.job["headers"], self.spec["body"]))

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        if self.chunked is None:
            self.head += data
            head, sep, data = bytes(self.head).partition(b"\r\n\r\n")
            if not sep:
                return
            status, self.chunked = parse_head(head)
            if status != 200:
                return self.finish(None, f"http {status}")
        if self.chunked:
            self.raw += data
            data, _ = dechunk(self.raw)
        self.sse += data
        self.read_events()

    def read_events(self) -> None:
        pos = 0
        while not self.done.done() and (end := self.sse.find(b"\n\n", pos)) >= 0:
            self.on_block(bytes(self.sse[pos:end]))
            pos = end + 2
        del self.sse[:pos]

    def on_block(self, block: bytes) -> None:
        event, data = b"message", None
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data = line[6:] if line[5:6] == b" " else line[5:]
            elif line.startswith(b"event:"):
                event = line[6:].strip()
        if data is not None:  # comments (`: ping`) and `retry:` carry none
            DIALECTS[self.job["dialect"]](self, event, data)

    def on_token(self, text: str) -> None:
        now = time.monotonic()
        if self.result["first"] is None:
            self.result["first"] = now
        else:
            self.result["gaps"].append(round((now - self.last) * 1000, 2))
        self.last = now
        self.parts.append(text)
        self.result["events"] += 1
        if self.result["events"] == self.spec.get("stop_after"):
            self.stop()

    def stop(self) -> None:
        """What a user's Stop does: hang up (a plain relay), the app's cancel call, or (the page's
        way) a cancel frame on the conversation's WebSocket (chatsite)."""
        self.result["stop_sent"] = time.monotonic()
        if self.job["stop"] == "close":
            self.finish("closed")
        elif self.job["stop"] == "ws":
            frame = {"type": "cancel", "message_id": self.result["message_id"]}
            self.ws.write(ws_text_frame(json.dumps(frame)))
            self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(STOP_GIVE_UP_S, self.finish, None, GAVE_UP)
        else:
            path = f"/api/messages/{self.result['message_id']}/cancel/"
            call = asyncio.ensure_future(fetch(self.job["host"], self.job["port"], "POST", path, self.job["headers"]))
            # The loop holds tasks weakly and a stream reader holds its waiter alone: without a strong
            # reference the call is collected mid-flight and its socket closed (the cancel then lost).
            CALLS.add(call)
            call.add_done_callback(CALLS.discard)
            call.add_done_callback(self.on_cancel_answer)
            # A stop that never takes effect would leave the stream running for its whole (long) script.
            self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(STOP_GIVE_UP_S, self.finish, None, GAVE_UP)

    def on_cancel_answer(self, call: asyncio.Future) -> None:
        if call.cancelled():  # the job ended first
            return
        failed = call.exception() or call.result()[0] != 202
        if failed:  # the stream then runs on, and its `done` says how it ended
            self.result["error"] = f"cancel call failed: {call.exception() or call.result()[0]}"

    def finish(self, status: str | None, error: str | None = None) -> None:
        if self.done.done():
            return
        self.timer.cancel()
        self.result.update(end=time.monotonic(), status=status, error=error, text="".join(self.parts))
        if self.transport is not None:
            self.transport.close()
        if self.ws is not None:
            self.ws.close()
        self.done.set_result(self.result)

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(None, "closed before the end")


def _openai(stream: Stream, event: bytes, data: bytes) -> None:
    if data == b"[DONE]":
        return stream.finish("complete")
    chunk = json.loads(data)
    if "error" in chunk:
        return stream.finish(None, "upstream error event")
    if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
        stream.on_token(text)


def _text(stream: Stream, event: bytes, data: bytes) -> None:
    if event == b"done":
        return stream.finish("complete")
    stream.on_token(json.loads(data)["text"])


def _chatsite(stream: Stream, event: bytes, data: bytes) -> None:
    if event == b"token":
        stream.on_token(json.loads(data)["text"])
    elif event == b"start":
        stream.result["message_id"] = json.loads(data)["message_id"]
    elif event == b"error":
        stream.result["error"] = "error event: " + json.loads(data)["code"]
    elif event == b"done":
        stream.finish(json.loads(data)["status"], stream.result["error"])


DIALECTS = {"openai": _openai, "text": _text, "chatsite": _chatsite}
CALLS: set[asyncio.Task] = set()  # cancel calls in flight
STOP_GIVE_UP_S = 15  # after a cancel call, the stream must end within this (the app's pool waits up to 10 s)
GAVE_UP = "the stop had no effect"


# --- a job ------------------------------------------------------------------------------------


async def one(job: dict, spec: dict) -> dict:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    stream = Stream(job, spec, started)
    try:
        if job["stop"] == "ws" and spec.get("stop_after"):  # a page has its WebSocket open already
            stream.ws = await ws_open(job["host"], job["port"], f"/ws/conversations/{spec['conv']}/", job["headers"])
        await loop.create_connection(lambda: stream, job["host"], job["port"])
    except (OSError, asyncio.IncompleteReadError) as exc:
        stream.finish(None, f"connect: {exc.__class__.__name__}")
    return await stream.done


async def slot(job: dict, spec: dict) -> list[dict]:
    """A stream at its start time; with `repeat_until`, the next one as soon as it ends, until then."""
    await asyncio.sleep(max(0.0, spec["start_at"] - time.monotonic()))
    results = [await one(job, spec)]
    while time.monotonic() < spec.get("repeat_until", 0):
        results.append(await one(job, spec))
    return results


async def run_job(job: dict) -> dict:
    for spec in job["streams"]:
        spec["body"] = spec["body"].encode()
    cpu0 = time.process_time()
    slots = await asyncio.gather(*(slot(job, spec) for spec in job["streams"]))
    if CALLS:  # cancel calls still waiting for their answer
        await asyncio.wait(CALLS, timeout=10)
    return {"streams": [r for results in slots for r in results], "cpu_s": time.process_time() - cpu0}


def main() -> None:
    for line in sys.stdin:
        result = asyncio.run(run_job(json.loads(line)))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
