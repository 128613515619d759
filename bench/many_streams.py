"""N concurrent answers against one daphne process on the SQLite default.

    .venv/bin/python -m bench.many_streams [--streams 300] [--tokens 100] [--rate 50]

Prints how many completed exactly (streamed text == stored content), time to first token
percentiles, and whether SQLite ever said "database is locked".
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import Event, LiveApp, iter_sse

PASSWORD = "bench-password-1"


async def one_answer(http: httpx.AsyncClient, cid: int) -> tuple[float | None, str, str]:
    t0 = time.perf_counter()
    ttft, parts, status = None, [], "no done"
    async with http.stream("POST", f"/api/conversations/{cid}/messages/", json={"content": "go"}) as r:
        buffer = []
        async for line in r.aiter_lines():
            buffer.append(line)
            if line == "":
                for item in iter_sse(iter(buffer)):
                    if isinstance(item, Event) and item.event == "token":
                        ttft = ttft or time.perf_counter() - t0
                        parts.append(item.data["text"])
                    elif isinstance(item, Event) and item.event == "done":
                        status = item.data["status"]
                buffer = []
    return ttft, "".join(parts), status


async def run(app: LiveApp, streams: int) -> list:
    client = app.client("bench", PASSWORD)
    cids = [client.new_conversation() for _ in range(streams)]
    limits = httpx.Limits(max_connections=streams + 10)
    async with httpx.AsyncClient(
        base_url=app.base_url, cookies=client.http.cookies, headers=client.http.headers, limits=limits, timeout=120
    ) as http:
        results = await asyncio.gather(*(one_answer(http, cid) for cid in cids))
    stored = [client.answer(cid)["content"] for cid in cids]
    client.close()
    return [(*res, content) for res, content in zip(results, stored, strict=True)]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    # The scripted upstream gets a process of its own, so it competes with neither the client here
    # nor daphne for a GIL: the figures are the app's.
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream", "--tokens", str(args.tokens), "--rate", str(args.rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    upstream_url = f"http://127.0.0.1:{int(upstream.stdout.readline())}/v1"
    app = LiveApp(Path(tempfile.mkdtemp(prefix="bench-")), {"OPENAI_BASE_URL": upstream_url})
    try:
        app.start()
        app.create_user("bench", PASSWORD)
        t0 = time.perf_counter()
        cpu0 = _cpu_s(app.proc.pid), time.process_time()
        rows = asyncio.run(run(app, args.streams))
        wall = time.perf_counter() - t0
        app_cpu, bench_cpu = _cpu_s(app.proc.pid) - cpu0[0], time.process_time() - cpu0[1]
    finally:
        app.stop()
        upstream.terminate()
    expected = "".join(f"w{i} " for i in range(args.tokens))
    complete = sum(status == "complete" for _, _, status, _ in rows)
    exact = sum(text == stored == expected for _, text, _, stored in rows)
    ttfts = sorted(t * 1000 for t, *_ in rows if t is not None)
    locked = app.log().count("database is locked")
    print(f"{args.streams} concurrent answers x {args.tokens} tokens at {args.rate:g}/s, one daphne, SQLite")
    print(f"complete: {complete}/{args.streams}   streamed == stored == expected: {exact}/{args.streams}")
    if ttfts:
        p99 = ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))]
        print(f"ttft ms: p50 {statistics.median(ttfts):.0f}  p99 {p99:.0f}  max {ttfts[-1]:.0f}")
    tokens = args.streams * args.tokens
    print(f"CPU: daphne {app_cpu:.1f} s ({app_cpu / tokens * 1e6:.0f} us/token), bench client {bench_cpu:.1f} s")
    print(f"wall {wall:.1f} s (ideal {args.tokens / args.rate:.1f} s per answer)   'database is locked': {locked}")


if __name__ == "__main__":
    main()
