"""Time to first token and tokens/s of the embedded SmolLM2: straight from its server vs through the app.

    .venv/bin/python -m bench.embedded [--runs 5] [--max-tokens 128]

Starts the model server and a daphne process of its own on free ports; prints a table.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

import django

django.setup()

import openai  # noqa: E402
from django.conf import settings  # noqa: E402

from chat import embedded  # noqa: E402
from tests.live import Event, LiveApp, free_port, iter_sse  # noqa: E402

PROMPT = "Explain in a few sentences why the sky is blue."


async def direct_run(base_url: str, max_tokens: int) -> tuple[float, float, int]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    t0 = time.perf_counter()
    ttft, n = None, 0
    stream = await client.chat.completions.create(
        model=settings.CHAT_EMBEDDED_MODEL,
        messages=[{"role": "system", "content": settings.CHAT_SYSTEM_PROMPT}, {"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - t0
            n += 1
    total = time.perf_counter() - t0
    await client.close()
    return ttft * 1000, n / (total - ttft), n


def app_run(client, max_tokens: int) -> tuple[float, float, int]:
    cid = client.new_conversation()
    t0 = time.perf_counter()
    ttft, n = None, 0
    with client.post_stream(cid, PROMPT) as r:
        for item in iter_sse(r.iter_lines()):
            if isinstance(item, Event) and item.event == "token":
                ttft = ttft or time.perf_counter() - t0
                n += 1
            elif isinstance(item, Event) and item.event == "done":
                # An event may carry several tokens (the contract allows it): count the model's tokens.
                n = item.data["stats"].get("tokens") or n
    total = time.perf_counter() - t0
    return ttft * 1000, n / (total - ttft), n


def summarise(rows: list[tuple[float, float, int]]) -> tuple[float, float, float]:
    return (
        statistics.median(r[0] for r in rows),
        statistics.median(r[1] for r in rows),
        statistics.median(r[2] for r in rows),
    )


def measure(runs: int, max_tokens: int) -> dict[str, dict[str, float]]:
    """Medians over `runs`, direct and through the app, interleaved so that drift hits both alike."""
    port = free_port()
    model = embedded.start(
        host="127.0.0.1",
        port=port,
        alias=settings.CHAT_EMBEDDED_MODEL,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    app = LiveApp(workdir, {"OPENAI_BASE_URL": "", "CHAT_EMBEDDED_PORT": str(port), "CHAT_MAX_TOKENS": str(max_tokens)})
    try:
        app.start()
        app.create_user("bench", "bench-password-1")
        client = app.client("bench", "bench-password-1")
        base_url = f"http://127.0.0.1:{port}/v1"
        asyncio.run(direct_run(base_url, max_tokens))  # warm-up
        direct, relayed = [], []
        for _ in range(runs):
            direct.append(asyncio.run(direct_run(base_url, max_tokens)))
            relayed.append(app_run(client, max_tokens))
        client.close()
    finally:
        app.stop()
        embedded.stop(model)
    return {
        name: dict(zip(("ttft_ms", "tokens_per_s", "tokens"), summarise(rows), strict=True))
        for name, rows in (("direct", direct), ("app", relayed))
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--json", action="store_true", help="print one JSON line (bench/relay.py reads it)")
    args = parser.parse_args()
    result = measure(args.runs, args.max_tokens)
    if args.json:
        print(json.dumps(result))
        return
    print(f"embedded SmolLM2-135M-Instruct, {args.runs} runs, max_tokens={args.max_tokens}, median")
    print(f"{'path':<28}{'ttft ms':>10}{'tokens/s':>10}{'tokens':>8}")
    for name, key in [("model server (direct)", "direct"), ("through the app (daphne)", "app")]:
        row = result[key]
        print(f"{name:<28}{row['ttft_ms']:>10.0f}{row['tokens_per_s']:>10.1f}{row['tokens']:>8.0f}")


if __name__ == "__main__":
    main()
