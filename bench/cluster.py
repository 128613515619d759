"""Two workers behind nginx with Redis and PostgreSQL: what crossing workers costs.

    .venv/bin/python -m bench.cluster [--cancels 60] [--kills 3] [--streams 100] [--tokens 200] [--rate 50]

Measures, on the real topology (tests/cluster.py):
- cross-worker cancel: an answer generated on worker A, cancelled on worker B (HTTP and
  WebSocket): time from sending the cancel to the upstream seeing its connection closed;
- a killed worker: an answer generated on A and followed on B; A gets SIGKILL; time until the
  follower on B has `done: interrupted`;
- relay CPU per token (daphne's user+system time from /proc) for 1 and N concurrent streams:
  one process on SQLite without Redis (the default), a worker with Redis (followers on the
  generating worker), and followers on the other worker (both workers' CPU counted).
The scripted upstream runs in this process's thread (its records give the close times).
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")  # the harness hashes passwords

from bench.relay_targets import collect_static
from tests.cluster import Cluster
from tests.live import PASSWORD, EventStream, LiveApp, iter_sse, read_all
from tests.upstream import Script, ScriptedUpstream

ENV = {
    "CHAT_MODEL": "bench-model",
    "CHAT_HEARTBEAT_S": "1.5",
    "CHAT_WORKER_TTL_S": "6",
    # Production settings, and no per-user limits for the one bench user (as bench/relay.py).
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "CHAT_USER_RATE_PER_MIN": "0",
    "CHAT_USER_CONCURRENCY": "100000",
    "CHAT_MAX_STREAMS": "2000",
}


class Lines(list):
    """Result lines, printed as they come (and all again at the end)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- cross-worker cancel -------------------------------------------------------------------------


def cancel_latencies(cluster: Cluster, upstream: ScriptedUpstream, count: int, via: str) -> list[float]:
    a, b = cluster.worker_client(0, "bench"), cluster.worker_client(1, "bench")
    cid = a.new_conversation()
    latencies = []
    with ExitStack() as stack:
        socket = None
        if via == "websocket":
            base = cluster.workers[1].base_url
            socket = stack.enter_context(
                ws_connect(
                    base.replace("http://", "ws://") + f"/ws/conversations/{cid}/",
                    origin=base,
                    additional_headers={"Cookie": f"sessionid={b.http.cookies['sessionid']}"},
                    open_timeout=5,
                )
            )
        for _ in range(count):
            upstream.push(tokens=1000, rate=100)
            with a.post_stream(cid, "cancel me from B") as r:
                stream = EventStream(r)
                answer_id = stream.events(limit=3)[0].data["message_id"]
                record = upstream.last()
                sent = time.monotonic()
                if socket is not None:
                    socket.send(json.dumps({"type": "cancel", "message_id": answer_id}))
                else:
                    b.cancel(answer_id)
                upstream.wait_for(lambda rec=record: rec.client_closed_at, 5, "the close")
                latencies.append((record.client_closed_at - sent) * 1000)
                stream.events()
                if socket is not None:  # read its frames, as a page does, up to this answer's end
                    while json.loads(socket.recv(timeout=5)) != {
                        "type": "generation",
                        "message_id": answer_id,
                        "state": "cancelled",
                    }:
                        pass
            time.sleep(0.1)  # a person's pace: stays under the socket's frame limit (10/s after 20)
    return latencies


# --- a killed worker -----------------------------------------------------------------------------


def kill_detection(cluster: Cluster, upstream: ScriptedUpstream, count: int) -> list[float]:
    times = []
    for _ in range(count):
        a, b = cluster.worker_client(0, "bench"), cluster.worker_client(1, "bench")
        cid = a.new_conversation()
        upstream.push(tokens=2000, rate=50)
        with a.post_stream(cid, "die midway") as r:
            answer_id = read_all(r, limit=1)[0].data["message_id"]
            with b.resume_stream(answer_id, 1) as follow:
                stream = EventStream(follow)
                stream.events(limit=20)
                cluster.kill(0)
                killed = time.monotonic()
                last = stream.events()[-1]
                times.append(time.monotonic() - killed)
                assert last.event == "done" and last.data["status"] == "interrupted", last
        cluster.restart(0)
    return times


# --- relay CPU -----------------------------------------------------------------------------------


async def _follow(http: httpx.AsyncClient, method: str, url: str, **kwargs) -> tuple[str, str]:
    parts, status = [], ""
    async with http.stream(method, url, **kwargs) as r:
        buffer: list[str] = []
        async for line in r.aiter_lines():
            buffer.append(line)
            if line == "":
                for item in iter_sse(iter(buffer)):
                    if getattr(item, "event", None) == "token":
                        parts.append(item.data["text"])
                    elif getattr(item, "event", None) == "done":
                        status = item.data["status"]
                buffer = []
    return "".join(parts), status


async def _streams(gen_url: str, follow_url: str | None, client, cids: list[int]) -> list[tuple[str, str]]:
    limits = httpx.Limits(max_connections=2 * len(cids) + 10)
    kw = {"cookies": client.http.cookies, "headers": client.http.headers, "limits": limits, "timeout": 120}
    async with (
        httpx.AsyncClient(base_url=gen_url, **kw) as gen,
        httpx.AsyncClient(base_url=follow_url or gen_url, **kw) as fol,
    ):

        async def one(cid: int) -> tuple[str, str]:
            if follow_url is None:
                return await _follow(gen, "POST", f"/api/conversations/{cid}/messages/", json={"content": "go"})
            # Post on the generating worker, read only `start` there, follow the answer on the other.
            async with gen.stream("POST", f"/api/conversations/{cid}/messages/", json={"content": "go"}) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"POST answered {r.status_code}: {(await r.aread())[:300]!r}")
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        message_id = json.loads(line[6:])["message_id"]
                        break
                follower = asyncio.ensure_future(_follow(fol, "GET", f"/api/messages/{message_id}/stream/"))
                return await follower

        return await asyncio.gather(*(one(cid) for cid in cids))


def relay_cpu(
    procs: list, gen_url: str, follow_url: str | None, client, streams: int, tokens: int
) -> tuple[float, int]:
    """CPU microseconds per relayed token over `procs`, and how many answers were exact."""
    cids = [client.new_conversation() for _ in range(streams)]
    before = sum(cpu_s(p.pid) for p in procs)
    results = asyncio.run(_streams(gen_url, follow_url, client, cids))
    used = sum(cpu_s(p.pid) for p in procs) - before
    expected = "".join(f"w{i} " for i in range(tokens))
    exact = sum(text == expected and status == "complete" for text, status in results)
    return used / (streams * tokens) * 1e6, exact


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cancels", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    collect_static()  # without DEBUG the login page needs the collected files
    upstream = ScriptedUpstream().start()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    lines = Lines()
    try:
        with Cluster(work / "cluster", upstream.base_url, ENV, workers=2) as cluster:
            cluster.create_user("bench", PASSWORD)
            for via in ("http", "websocket"):
                ms = cancel_latencies(cluster, upstream, args.cancels, via)
                lines.append(
                    f"cancel on B of an answer on A ({via}, {len(ms)} cancels): upstream closed after "
                    f"p50 {statistics.median(ms):.1f} ms, p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
                )
            seconds = kill_detection(cluster, upstream, args.kills)
            lines.append(
                "SIGKILL of A, follower on B has done: interrupted after "
                + ", ".join(f"{s:.1f}" for s in seconds)
                + " s (heartbeat 1.5 s, TTL 6 s)"
            )
            upstream.default = Script(tokens=args.tokens, rate=args.rate)
            a, b = cluster.workers
            client = cluster.worker_client(0, "bench")
            for n in (1, args.streams):
                us, exact = relay_cpu([a.proc], a.base_url, None, client, n, args.tokens)
                lines.append(f"relay CPU, Redis, followers on A, {n} stream(s): {us:.0f} us/token (exact {exact}/{n})")
                us, exact = relay_cpu([a.proc, b.proc], a.base_url, b.base_url, client, n, args.tokens)
                lines.append(
                    f"relay CPU, Redis, followers on B, {n} stream(s): {us:.0f} us/token A+B (exact {exact}/{n})"
                )
        (work / "single").mkdir()
        with LiveApp(work / "single", {"OPENAI_BASE_URL": upstream.base_url, **ENV}) as app:
            upstream.default = Script(tokens=args.tokens, rate=args.rate)
            client = app.new_client("bench")
            for n in (1, args.streams):
                us, exact = relay_cpu([app.proc], app.base_url, None, client, n, args.tokens)
                lines.append(
                    f"relay CPU, no Redis (SQLite, one process), {n} stream(s): {us:.0f} us/token (exact {exact}/{n})"
                )
    finally:
        upstream.stop()
    print(f"two daphne workers + nginx + Redis + PostgreSQL; {args.tokens} tokens at {args.rate:g}/s per answer")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
