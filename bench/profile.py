"""Where the server's CPU goes, by layer: py-spy samples of chatsite (and the reference relay)
while `make bench`'s loads run. It is the profile behind each target the relay table misses.

    make bench-profile ARGS="..."   or   .venv/bin/python -m bench.profile [--targets ...] [--levels ...]

Phases, each against a fresh set of servers fed by the scripted upstream:
  one answer at a time short answers (3 tokens) in a row, never overlapping: the request path
                       that makes time to first token at 1 stream (CPU per answer);
  N streams            the relay table's levels (CPU per 1,000 tokens): what a token costs, and
                       what saturates the one event loop at 300 (TTFT, gaps, stops under load).

Each sample of a running thread goes to the layer of its innermost frame from a known package
(LAYERS; a stack with none is the interpreter's own). py-spy reads the process from outside
(--nonblocking: it never pauses it), so the app runs unchanged. The shares are of the sampled
thread time; the milliseconds are those shares of the CPU that /proc counted for the phase.
"""

import argparse
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench import relay, relay_targets
from bench.relay_targets import Target, Upstream

RATE = 500  # samples a second
POSTS = 60  # one answer at a time: this many short answers, POST_SPACING_S apart
POST_SPACING_S = 0.15

# (layer, path fragments): the innermost frame matching one names the sample's layer.
LAYERS = [
    ("SQLite and Django's ORM", ("/django/db/", "/sqlite3/")),
    ("Django sessions and auth", ("/django/contrib/sessions/", "/django/contrib/auth/")),
    ("Django request and response (handler, middleware, URLs)", ("/django/",)),
    (
        "openai SDK and its HTTP stack: httpx2 or aiohttp (upstream request, body)",
        (
            "/openai/",
            "/httpx",
            "/httpcore",
            "/anyio/",
            "/h11/",
            "/aiohttp/",
            "/multidict/",
            "/yarl/",
            "/pydantic",
            "/sniffio/",
        ),
    ),
    (
        "chatsite: the token path (chunks, event log, SSE frames)",
        (
            "/chat/llm.py",
            "/chat/upstream_http.py",
            "/chat/generation.py",
            "/chat/eventlog.py",
            "/chat/sse.py",
            "/chat/redislog.py",
        ),
    ),
    ("chatsite: the rest (views, services, handler, metrics)", ("/chat/", "/chatsite/", "/prometheus_client/")),
    ("reference relay (FastAPI, Starlette)", ("/fastapi/", "/starlette/", "/bench/reference_relay")),
    # The server's frames are the root of every stack on the loop thread: the loop's own work in
    # C (epoll, socket sends) lands here too, as does Twisted's reactor on top of asyncio.
    ("HTTP server and the loop it runs: daphne, Twisted", ("/daphne/", "/twisted/", "/autobahn/", "/txaio/")),
    ("HTTP server and the loop it runs: uvicorn, uvloop", ("/uvicorn/", "/uvloop/", "/httptools/")),
    ("Channels, asgiref", ("/channels/", "/asgiref/")),
]
LOOP = "interpreter and stdlib only (the asyncio loop, GC)"
FRAME = re.compile(r"\((.*):\d+\)$")


def layer_of(files: list[str]) -> str:
    """`files` from the innermost frame out."""
    for file in files:
        path = "/" + file.lstrip("/")
        for name, fragments in LAYERS:
            if any(f in path for f in fragments):
                return name
    return LOOP


def read_raw(path: Path) -> tuple[Counter, Counter, Counter, int]:
    """py-spy's raw (collapsed) stacks: samples by layer, by innermost function, by thread kind."""
    layers, functions, threads, total = Counter(), Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        n = int(count)
        files = [m.group(1) for f in reversed(frames) if (m := FRAME.search(f))]
        layers[layer_of(files)] += n
        if frames:
            functions[frames[-1]] += n
        threads["sync threads" if "sync-" in thread else "event loop thread"] += n
        total += n
    return layers, functions, threads, total


class Sampler:
    """py-spy recording one process until stopped."""

    def __init__(self, pid: int, out: Path):
        self.out = out
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking", "--threads"]
        self.proc = subprocess.Popen(
            [*command, "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # attached before the load starts
        if self.proc.poll() is not None:
            raise RuntimeError(f"py-spy could not attach: {self.proc.stderr.read().strip()[:300]}")

    def stop(self) -> Path:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.strip()[:300]}")
        return self.out


def sampled(target: Target, out: Path, load: Callable[[], int]) -> dict:
    """Run `load()` under py-spy; the profile, with /proc's CPU seconds for the same span.
    `load()` returns how many units (answers, tokens) the span served."""
    pids = target.pids()
    sampler = Sampler(pids[0], out)
    cpu0 = relay_targets.cpu_s(pids)
    try:
        units = load()
    finally:
        cpu = relay_targets.cpu_s(pids) - cpu0
        sampler.stop()
    layers, functions, threads, total = read_raw(out)
    return {
        "cpu_s": cpu,
        "units": units,
        "samples": total,
        "layers": dict(layers.most_common()),
        "threads": dict(threads),
        "top": functions.most_common(12),
    }


def phase_answers(bench: relay.Bench, target: Target) -> Callable[[], int]:
    """Short answers one after another. Their conversations are made now, before sampling."""
    specs = bench.specs(target, POSTS, "[script:ttft] probe", 0, 0)

    def load() -> int:
        t0 = time.monotonic() + 0.3
        timed = [{**spec, "start_at": t0 + POST_SPACING_S * i} for i, spec in enumerate(specs)]
        outs, _ = bench.clients.run([bench.job(target, timed)])
        return sum(1 for out in outs for r in out["streams"] if r["first"])

    return load


def phase_streams(bench: relay.Bench, target: Target, n: int) -> Callable[[], int]:
    """The relay table's level of n streams, their starts spread over --ramp seconds."""
    specs = bench.specs(target, n, "go", 0, 0)

    def load() -> int:
        t0 = time.monotonic() + 0.3
        timed = [{**spec, "start_at": t0 + bench.args.ramp * i / n} for i, spec in enumerate(specs)]
        outs, _ = bench.clients.run(bench.split(target, timed))
        return sum(len(r["text"].split()) for out in outs for r in out["streams"])

    return load


STARTERS = {
    "chatsite": relay_targets.chatsite_single,
    "uvicorn": relay_targets.chatsite_uvicorn,
    "reference": relay_targets.reference_relay,
}


def profile_target(key: str, args: argparse.Namespace, work: Path) -> dict:
    """Every phase against `key`, each on servers of its own (a fresh database, an idle loop)."""
    phases: dict[str, dict] = {}
    plan = [("answers", None)] + [(f"{n} streams", n) for n in args.levels]
    for name, n in plan:
        with ExitStack() as stack:
            upstream = Upstream(tokens=args.tokens, rate=args.rate, first_delay=args.first_delay)
            stack.callback(upstream.stop)
            clients = relay.Clients(2)
            stack.callback(clients.close)
            target = stack.enter_context(STARTERS[key](upstream, work / f"{key}-{n or 'answers'}"))
            bench = relay.Bench(args, upstream, clients)
            bench.warm_up(target)
            out = work / f"{key}-{n or 'answers'}.txt"
            load = phase_answers(bench, target) if n is None else phase_streams(bench, target, n)
            phases[name] = sampled(target, out, load)
            relay.log(f"{target.label}, {name}: {phases[name]['samples']} samples")
    return phases


def render(report: dict) -> str:
    keys = list(report["targets"])
    labels = {"chatsite": "chatsite 1 process", "uvicorn": "chatsite on uvicorn", "reference": "reference relay"}
    width = max(len(name) for name, _ in [*LAYERS, (LOOP, ())]) + 4
    lines = [
        f"Where the server's CPU goes, by layer (py-spy at {RATE}/s; {report['date']}, "
        f"chatsite at {report['source'].get('commit') or '?'})",
        "",
        " " * width + "".join(f"{labels[k]:>26}" for k in keys),
    ]
    phases = list(next(iter(report["targets"].values())))
    for phase in phases:
        per_post = phase == "answers"
        unit = "one answer at a time: CPU ms per answer" if per_post else f"{phase}: CPU ms per 1,000 tokens"
        row = [unit]
        for k in keys:
            p = report["targets"][k][phase]
            row.append(_per_unit(p, per_post))
        lines.append(f"{row[0]:<{width}}" + "".join(f"{_fmt(v):>26}" for v in row[1:]))
        names = []
        for k in keys:
            names += [n for n in report["targets"][k][phase]["layers"] if n not in names]
        for name in names:
            cells = []
            for k in keys:
                p = report["targets"][k][phase]
                share = p["layers"].get(name, 0) / p["samples"] if p["samples"] else 0
                total = _per_unit(p, per_post)
                cells.append(f"{_fmt(total * share if total else None)} ({share:4.0%})" if share else "-")
            lines.append(f"  {name:<{width - 2}}" + "".join(f"{c:>26}" for c in cells))
    for k in keys:
        for phase, p in report["targets"][k].items():
            lines += ["", f"{labels[k]}, {phase}: the busiest functions (own samples, of {p['samples']})"]
            lines += [f"  {n / max(p['samples'], 1):5.1%}  {frame[:110]}" for frame, n in p["top"]]
    return "\n".join(lines)


def _per_unit(p: dict, per_post: bool) -> float | None:
    if not p["units"]:
        return None
    return p["cpu_s"] * 1000 / p["units"] if per_post else p["cpu_s"] * 1000 / p["units"] * 1000


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="chatsite,uvicorn,reference", type=lambda s: s.split(","))
    parser.add_argument(
        "--levels",
        type=_ints,
        default=[100, 300],
        help="concurrent streams to profile",
    )
    parser.add_argument("--keep", action="store_true", help="keep the raw stacks (flamegraph input) and logs")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/profile-<date>.json)")
    args = parser.parse_args(argv)
    # What relay.Bench reads, as `make bench` runs it.
    defaults = relay.parse_args([])
    for name in ("tokens", "rate", "first_delay", "ramp", "split_at"):
        setattr(args, name, getattr(defaults, name))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": relay.machine(),
        "source": relay.source(),
        "rate": RATE,
    }
    try:
        if {"chatsite", "uvicorn"} & set(args.targets):
            relay_targets.collect_static()
        report["targets"] = {key: profile_target(key, args, work) for key in args.targets}
    except BaseException:
        print(f"failed; the servers' logs are in {work}", file=sys.stderr)
        raise
    if args.keep:
        print(f"raw stacks and logs: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(render(report))
    out = args.out or relay.RESULTS / f"profile-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(relay.rounded(report), indent=1) + "\n")
    print(f"\nJSON written to {out}")


if __name__ == "__main__":
    main()
