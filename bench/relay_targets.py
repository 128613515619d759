"""What bench/relay.py measures: the processes it starts, each seen as a `Target` to stream from.

- the scripted upstream (bench/scripted_upstream.py), also the `direct` target;
- the reference relay (bench/reference_relay.py) under plain uvicorn, one process;
- chatsite in one daphne process on SQLite with the in-memory layer (tests/live.py's LiveApp);
- chatsite as two daphne workers behind nginx on PostgreSQL and Redis (tests/cluster.py's Cluster,
  which takes a Redis db and a PostgreSQL database of its own and gives them back).

Server CPU and memory come from /proc, summed over a target's processes (nginx's too).
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.relay_client import fetch
from chat import cluster as chat_cluster
from tests.live import ApiClient, LiveApp, free_port

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
USER, PASSWORD = "bench", "bench-password-1"
# Loopback only, never through an http_proxy from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- /proc ------------------------------------------------------------------------------------


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes, from /proc/<pid>/stat."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kb(pids: list[int]) -> int:
    """Resident memory of these processes (VmRSS), in KB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def with_children(pid: int) -> list[int]:
    """A process and its direct children (nginx's master and its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


# --- targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    label: str
    port: int
    dialect: str  # how its SSE reads (bench/relay_client.py): "openai", "text" or "chatsite"
    stop_by: str  # what a user's Stop is: "close" the connection, or "post" the cancel call
    pids: Callable[[], list[int]] = list
    headers: str = ""  # the session cookie and CSRF header, for chatsite
    host: str = "127.0.0.1"
    info: dict = field(default_factory=dict)

    @property
    def stores(self) -> bool:
        return self.dialect == "chatsite"

    def request(self, content: str, conv: int | None = None) -> dict:
        """Path and JSON body of one streaming request that asks `content`."""
        if self.dialect == "openai":
            body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True}
            return {"path": "/v1/chat/completions", "body": json.dumps(body)}
        if self.dialect == "text":
            return {"path": "/chat", "body": json.dumps({"content": content})}
        return {"path": f"/api/conversations/{conv}/messages/", "body": json.dumps({"content": content}), "conv": conv}

    def conversations(self, count: int) -> list[int | None]:
        """A fresh conversation per stream on chatsite (one answer at a time each); None elsewhere."""
        if not self.stores:
            return [None] * count
        return asyncio.run(self._gather(self._new_conversation() for _ in range(count)))

    def stored(self, conversation_ids: set[int]) -> dict[int, str]:
        """Every stored assistant message of these conversations: message id -> content."""
        pages = asyncio.run(self._gather(self._conversation(cid) for cid in conversation_ids))
        return {m["id"]: m["content"] for page in pages for m in page["messages"] if m["role"] == "assistant"}

    async def _gather(self, calls) -> list:
        # A few at a time: set-up requests, not part of any measurement.
        gate = asyncio.Semaphore(16)

        async def one(call):
            async with gate:
                return await call

        return await asyncio.gather(*(one(call) for call in calls))

    async def _new_conversation(self) -> int:
        status, body = await fetch(self.host, self.port, "POST", "/api/conversations/", self.headers, b"{}")
        if status != 201:
            raise RuntimeError(f"{self.label}: creating a conversation answered {status}: {body[:200]!r}")
        return json.loads(body)["id"]

    async def _conversation(self, cid: int) -> dict:
        status, body = await fetch(self.host, self.port, "GET", f"/api/conversations/{cid}/", self.headers)
        if status != 200:
            raise RuntimeError(f"{self.label}: reading conversation {cid} answered {status}")
        return json.loads(body)


def session_headers(base_url: str) -> str:
    """Log in as the bench user (tests/live.py's ApiClient); the headers every later request sends."""
    client = ApiClient.login(base_url, USER, PASSWORD)
    cookies = "; ".join(f"{name}={value}" for name, value in client.http.cookies.items())
    headers = f"Cookie: {cookies}\r\nX-CSRFToken: {client.http.cookies['csrftoken']}\r\n"
    client.close()
    return headers


class Upstream:
    """The scripted upstream in its own process; its records tell when each client hung up."""

    def __init__(self, *, tokens: int, rate: float, first_delay: float):
        self.script = {"tokens": tokens, "rate": rate, "first_delay": first_delay}
        args = ["--tokens", str(tokens), "--rate", str(rate), "--first-delay", str(first_delay)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scripted_upstream", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=chat_cluster.die_with_parent,
        )
        ports = json.loads(self.proc.stdout.readline())
        self.port, self.control = ports["port"], ports["control"]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def target(self) -> Target:
        return Target("direct", "direct upstream", self.port, "openai", "close")

    def expected_text(self) -> str:
        return "".join(f"w{i} " for i in range(self.script["tokens"]))

    def records(self, contains: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.control}/records?contains={urllib.parse.quote(contains)}"
        with _direct.open(url, timeout=10) as r:
            return json.loads(r.read())

    def clear(self) -> None:
        _direct.open(urllib.request.Request(f"http://127.0.0.1:{self.control}/clear", method="POST"), timeout=10)

    def stop(self) -> None:
        chat_cluster.stop(self.proc)


def chat_env(upstream: Upstream) -> dict[str, str]:
    # Production settings: DEBUG keeps every query in memory and serves static files from the
    # source folders, which no deployment does.
    return {
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "CHAT_MODEL": MODEL,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": _SECRET_KEY,
        # One bench user stands for hundreds of people: no per-user limits, and room for the
        # capacity search's 600 streams in one process.
        "CHAT_USER_RATE_PER_MIN": "0",
        "CHAT_USER_CONCURRENCY": "100000",
        "CHAT_MAX_STREAMS": "2000",
    }


_SECRET_KEY = secrets.token_urlsafe(50)


def collect_static() -> None:
    """Without DEBUG the login page needs the collected, hashed static files, as in production."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": _SECRET_KEY,
        },
        check=True,
    )


@contextmanager
def reference_relay(upstream: Upstream, workdir: Path) -> Iterator[Target]:
    """bench/reference_relay.py under plain `uvicorn` (its defaults: one process, asyncio loop)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "uvicorn.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                *(
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.reference_relay:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ),
                # As before uvloop and httptools were installed for the uvicorn column: plain asyncio and h11.
                *("--loop", "asyncio", "--http", "h11"),
            ],
            cwd=ROOT,
            env={**os.environ, **chat_env(upstream)},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=chat_cluster.die_with_parent,
        )
    try:
        chat_cluster.wait_until_answers(f"http://127.0.0.1:{port}/chat", proc, log=log)
        yield Target("reference", "reference relay", port, "text", "close", pids=lambda: [proc.pid])
    finally:
        chat_cluster.stop(proc)


@contextmanager
def chatsite_single(upstream: Upstream, workdir: Path) -> Iterator[Target]:
    """One daphne process, SQLite, in-memory channel layer: the default `make run` topology."""
    with _chatsite_one(upstream, workdir, "chatsite", "chatsite 1 process") as target:
        yield target


@contextmanager
def chatsite_uvicorn(upstream: Upstream, workdir: Path) -> Iterator[Target]:
    """The same app and settings as chatsite_single, served by uvicorn (uvloop, httptools) instead of daphne."""
    command = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    command += ["--host", "127.0.0.1", "--port"]
    with _chatsite_one(upstream, workdir, "uvicorn", "chatsite on uvicorn", command) as target:
        yield target


@contextmanager
def _chatsite_one(
    upstream: Upstream, workdir: Path, key: str, label: str, command: list[str] | None = None
) -> Iterator[Target]:
    workdir.mkdir(parents=True, exist_ok=True)
    with LiveApp(workdir, chat_env(upstream), command=command) as app:
        app.create_user(USER, PASSWORD)
        yield Target(
            key,
            label,
            app.port,
            "chatsite",
            "post",
            pids=lambda: [app.proc.pid],
            headers=session_headers(app.base_url),
        )


@contextmanager
def chatsite_cluster(upstream: Upstream, workdir: Path) -> Iterator[Target]:
    """Two daphne workers behind nginx on PostgreSQL and Redis: the `make cluster` topology."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")  # Cluster hashes the password here
    from tests.cluster import Cluster  # Django's password hashers want the settings module named first

    with Cluster(workdir, upstream.base_url, chat_env(upstream), workers=2) as cluster:
        cluster.create_user(USER, PASSWORD)

        def pids() -> list[int]:
            return [w.proc.pid for w in cluster.workers] + with_children(cluster.nginx.pid)

        yield Target(
            "cluster",
            "chatsite 2 workers",
            cluster.port,
            "chatsite",
            "post",
            pids=pids,
            headers=session_headers(cluster.base_url),
        )
