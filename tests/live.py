"""The app under a real daphne process, driven by a real HTTP client (httpx).

The server gets its own SQLite file, migrated by `manage.py migrate`, so tests see exactly what
a user would: only HTTP. Browser tests reuse `LiveApp` too.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from chat import cluster

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Event:
    id: int
    event: str
    data: dict


def iter_sse(lines: Iterator[str]) -> Iterator[Event | str]:
    """Events (and `: comment` lines, as str) from an SSE body, one at a time as they arrive."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield Event(int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
        elif line.startswith(":"):
            yield line
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def sse_lines(response: httpx.Response) -> Iterator[str]:
    """The body's lines as SSE splits them: at CR, LF or CRLF only. (httpx's iter_lines also splits
    at U+2028, U+0085 and the like, which the JSON of a `data:` line carries as they are.)"""
    pending = ""
    for text in response.iter_text():
        lines = re.split(r"\r\n|\r(?!$)|\n", pending + text)  # a CR at the end may be half a CRLF
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending.removesuffix("\r")


class LiveApp:
    """One daphne process on a free port with its own database and settings."""

    def __init__(self, workdir: Path, env: dict[str, str], *, migrate: bool = True, command: list[str] | None = None):
        self.workdir = workdir
        # Another ASGI server's command line, ending where the port goes (bench/relay_targets.py).
        self.command = command
        self.migrate = migrate  # False when someone else migrates the shared database (tests/cluster.py)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "db.sqlite3"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "DJANGO_DEBUG": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "daphne.log"
        self._clients: list[ApiClient] = []

    def __enter__(self) -> "LiveApp":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def create_user(self, username: str, password: str) -> None:
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={password!r})",
        )

    def start(self) -> "LiveApp":
        return self.spawn().wait_ready()

    def spawn(self) -> "LiveApp":
        """Start daphne without waiting for it (several at once start faster); then wait_ready()."""
        if self.migrate:
            self.manage("migrate", "--noinput", "-v0")
        if getattr(self, "_log", None):  # a restart: the last process's log handle is done with
            self._log.close()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, str(self.port), "chatsite.asgi:application"]
            if self.command
            else cluster.worker_command(self.port),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=cluster.die_with_parent,
        )
        return self

    def wait_ready(self, timeout: float = 30) -> "LiveApp":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.log()}")
            try:
                httpx.get(f"{self.base_url}/accounts/login/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self._clients:
            client.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, username: str, password: str = PASSWORD) -> "ApiClient":
        client = ApiClient.login(self.base_url, username, password)
        self._clients.append(client)
        return client

    def new_client(self, username: str) -> "ApiClient":
        """A new user, logged in."""
        self.create_user(username, PASSWORD)
        return self.client(username)


class ApiClient:
    """A logged-in session speaking the JSON API, with the CSRF header set."""

    def __init__(self, http: httpx.Client):
        self.http = http

    @classmethod
    def login(cls, base_url: str, username: str, password: str) -> "ApiClient":
        http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30, connect=5))
        http.get("/accounts/login/")
        token = http.cookies["csrftoken"]
        r = http.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base_url}/accounts/login/"},
        )
        if r.status_code != 302:
            raise AssertionError(f"login failed for {username}: {r.status_code}")
        http.headers["X-CSRFToken"] = http.cookies["csrftoken"]
        return cls(http)

    def new_conversation(self, title: str = "") -> int:
        r = self.http.post("/api/conversations/", json={"title": title} if title else {})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def conversation(self, id: int) -> dict:
        r = self.http.get(f"/api/conversations/{id}/")
        assert r.status_code == 200, r.text
        return r.json()

    def answer(self, conversation_id: int) -> dict:
        return [m for m in self.conversation(conversation_id)["messages"] if m["role"] == "assistant"][-1]

    def post_stream(self, conversation_id: int, content: str):
        """A context manager: the streaming response to posting a message."""
        return self.http.stream("POST", f"/api/conversations/{conversation_id}/messages/", json={"content": content})

    def resume_stream(self, message_id: int, last_event_id: int | None = None):
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        return self.http.stream("GET", f"/api/messages/{message_id}/stream/", headers=headers)

    def cancel(self, message_id: int) -> httpx.Response:
        return self.http.post(f"/api/messages/{message_id}/cancel/")

    def close(self) -> None:
        self.http.close()


class EventStream:
    """An SSE response read in parts: the first N events, then (after doing something) the rest."""

    def __init__(self, response: httpx.Response):
        self._items = iter_sse(sse_lines(response))

    def events(self, limit: int | None = None) -> list[Event]:
        """Events until the stream ends or `limit` have arrived (then stop reading)."""
        events: list[Event] = []
        for item in self._items:
            if isinstance(item, Event):
                events.append(item)
                if len(events) == limit:
                    break
        return events


def read_all(response: httpx.Response, limit: int | None = None) -> list[Event]:
    return EventStream(response).events(limit)


def text_of(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "token")
