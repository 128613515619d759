"""A client that stops reading is dropped; one that reads slowly is not (real daphne, real sockets)."""

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chat import slowclients
from tests.conftest import LIVE_ENV
from tests.live import LiveApp

TOKENS = [f"{i:05d}" + "x" * 995 for i in range(3000)]  # 1 KB each: 3 MB in all, at 300 KB/s


@pytest.fixture(scope="module")
def app(upstream_server, tmp_path_factory):
    env = {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV, "CHAT_SLOW_CLIENT_S": "1"}
    with LiveApp(tmp_path_factory.mktemp("slow"), env) as app:
        yield app


def open_stream(app: LiveApp, client, cid: int) -> socket.socket:
    """POST a message on a raw socket with a tiny receive buffer, reading nothing back yet."""
    body = json.dumps({"content": "a long one"}).encode()
    cookies = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    head = (
        f"POST /api/conversations/{cid}/messages/ HTTP/1.1\r\nHost: {app.base_url.split('//')[1]}\r\n"
        f"Cookie: {cookies}\r\nX-CSRFToken: {client.http.cookies['csrftoken']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", int(app.base_url.rsplit(":", 1)[1])))
    sock.sendall(head.encode() + body)
    return sock


def wait_for_status(client, cid: int, status: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    answers = []
    while time.monotonic() < deadline:
        answers = [m for m in client.conversation(cid)["messages"] if m["role"] == "assistant"]
        if answers and answers[-1]["status"] == status:
            return answers[-1]
        time.sleep(0.1)
    raise AssertionError(f"answer still {answers[-1]['status'] if answers else 'missing'}, not {status}")


def test_a_client_that_reads_nothing_is_dropped_and_its_answer_stops(app, upstream):
    upstream.push(tokens=TOKENS, rate=300)
    client = app.new_client("sid")
    cid = client.new_conversation()
    sock = open_stream(app, client, cid)
    try:
        answer = wait_for_status(client, cid, "interrupted")  # dropped, then the 1 s grace
        record = upstream.last()
        upstream.wait_for(lambda: record.client_closed_at, 2, "the upstream connection to close")
        assert record.tokens_sent < len(TOKENS)  # stopped long before the model was done
        kept = len(answer["content"]) // 1000
        assert kept and answer["content"] == "".join(TOKENS[:kept])  # what was relayed, nothing else
        sock.settimeout(5)
        with pytest.raises(OSError):  # the server aborted the connection: a reset once read
            while sock.recv(65536):
                pass
    finally:
        sock.close()
    assert "read nothing" in app.log()


def test_a_client_that_reads_slowly_but_steadily_gets_the_whole_answer(app, upstream):
    tokens = TOKENS[:600]  # 600 KB at 300 KB/s from the model; read at about 150 KB/s
    upstream.push(tokens=tokens, rate=300)
    client = app.new_client("sly")
    cid = client.new_conversation()
    sock = open_stream(app, client, cid)
    received = b""
    try:
        sock.settimeout(10)
        while b"event: done" not in received:
            chunk = sock.recv(4096)
            assert chunk, "the server closed the stream early"
            received += chunk
            time.sleep(4096 / 150_000)
    finally:
        sock.close()
    answer = client.answer(cid)
    assert answer["status"] == "complete" and answer["content"] == "".join(tokens)
    assert b'"status":"complete"' in received


class Connection:
    """What the guard uses of daphne's transport: the socket, and a way to abort it."""

    def __init__(self, sock: socket.socket):
        self.sock, self.aborted = sock, asyncio.Event()

    def getHandle(self):
        return self.sock

    def abortConnection(self):
        self.aborted.set()
        self.sock.close()


def test_the_guard_keeps_watching_after_a_watched_socket_closes_under_it(settings):
    """Under load a client's connection can close before its response lets go of the watch (seen
    in `make bench`); the watchdog must skip that socket, not die and leave every stream unguarded."""
    settings.CHAT_SLOW_CLIENT_S = 1
    # A loop of its own on a thread of its own: in a whole run the browser tests' Playwright (sync
    # API) holds this thread's event loop as running, and pytest-asyncio cannot start another here.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _closed_socket_then_a_stalled_client()).result()


async def _closed_socket_then_a_stalled_client():
    listener = socket.create_server(("127.0.0.1", 0))
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(listener.getsockname())
    stalled, _ = listener.accept()
    leaver = socket.create_connection(listener.getsockname())
    gone, _ = listener.accept()
    try:
        stuck, closed = Connection(stalled), Connection(gone)
        assert slowclients._watch(closed) and slowclients._watch(stuck)
        gone.close()  # its connection went; its watch is still there
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):  # the client reads nothing: fill what it will take
            while True:
                stalled.send(b"x" * 65536)
        # Dropped after 1 s of reading nothing, on the watchdog's 1 s ticks: well within 6 s.
        await asyncio.wait_for(stuck.aborted.wait(), 6)
    finally:
        slowclients._watching.clear()
        for sock in (listener, reader, stalled, leaver, gone):
            sock.close()
