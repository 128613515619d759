"""Relaying tokens side by side (issue 8): the upstream direct, a minimal FastAPI relay, chatsite in
one process and chatsite as two workers behind nginx, all in one run, all fed by one scripted upstream.

    make bench ARGS="..."     or     .venv/bin/python -m bench.relay [--quick] [--targets ...]

For 1, 100 and 300 concurrent streams: time to first token over the direct upstream, inter-token gap,
server CPU per 1,000 tokens, RSS growth per stream, errors, exactness; then each one's capacity
within the latency bounds, stop -> upstream-closed latency under load, and the embedded model's
tokens/s through the app. Prints a table, the issue's targets for chatsite's one-process column,
and writes bench/results/relay-<date>.json. How it measures, and why so: docs/benchmark.md.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from bench import relay_client, relay_report, relay_targets
from bench.relay_targets import Target, Upstream

RESULTS = Path(__file__).resolve().parent / "results"
TTFT_BOUND_MS = 150.0  # capacity: TTFT over direct, p99
GAP_BOUND_MS = 60.0  # capacity: inter-token gap, p99
TTFT_PROBES = 20  # single-stream TTFT: this many short answers one after another
CAPACITY_FLOOR = 10  # the capacity search halves down to this below its first level
STOP_SPACING_S = 0.1  # between two stops while the load runs
START = time.monotonic()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def log(message: str) -> None:
    print(f"[{time.monotonic() - START:6.0f} s] {message}", file=sys.stderr, flush=True)


# --- the load client processes ---------------------------------------------------------------


class Clients:
    """Load-client worker processes (bench/relay_client.py): jobs in, results out, as JSON lines."""

    def __init__(self, count: int):
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.relay_client"],
                cwd=relay_targets.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def run(self, jobs: list[dict], sample=None) -> tuple[list[dict], float]:
        """Each job to a worker of its own; `sample()` every 0.1 s meanwhile. Results, and the max of the samples."""
        for proc, job in zip(self.procs, jobs, strict=False):
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        waiting = {proc.stdout: proc for proc in self.procs[: len(jobs)]}
        results, peak = [], 0.0
        while waiting:
            ready, _, _ = select.select(list(waiting), [], [], 0.1)
            for out in ready:
                line = out.readline()
                if not line:
                    raise RuntimeError("a load client died (see its stderr above)")
                results.append(json.loads(line))
                del waiting[out]
            if sample is not None:
                peak = max(peak, sample())
        return results, peak

    def close(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
            proc.wait(10)


# --- one measurement ---------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, upstream: Upstream, clients: Clients):
        self.args, self.upstream, self.clients = args, upstream, clients
        self.expected = upstream.expected_text()
        self.levels: dict[tuple[str, int], dict] = {}
        self.idle_rss: dict[str, int] = {}
        self.direct: Target = upstream.target()

    def job(self, target: Target, streams: list[dict], timeout: float = 90, stop_by: str | None = None) -> dict:
        return {
            "host": target.host,
            "port": target.port,
            "dialect": target.dialect,
            "stop": stop_by or target.stop_by,
            "headers": target.headers,
            "timeout": timeout,
            "streams": streams,
        }

    def specs(self, target: Target, count: int, content: str, t0: float, ramp: float) -> list[dict]:
        """`count` requests asking `content`, their starts spread evenly over `ramp` seconds from t0."""
        convs = target.conversations(count)
        return [{**target.request(content, conv), "start_at": t0 + ramp * i / count} for i, conv in enumerate(convs)]

    def split(self, target: Target, specs: list[dict]) -> list[dict]:
        """One job per load-client process: two from --split-at streams on, interleaved."""
        parts = 2 if len(specs) >= self.args.split_at and len(self.clients.procs) > 1 else 1
        return [self.job(target, specs[i::parts]) for i in range(parts)]

    def warm_up(self, target: Target) -> None:
        """A few short answers (lazy imports, first connections), then the idle RSS to grow from."""
        specs = self.specs(target, 10, "[script:ttft] warm up", time.monotonic() + 0.2, 0.2)
        self.clients.run([self.job(target, specs)])
        time.sleep(0.5)
        self.idle_rss[target.key] = relay_targets.rss_kb(target.pids())

    def level(self, target: Target, n: int) -> dict:
        """N concurrent streams against `target` (cached: capacity search reuses the table's levels)."""
        if (target.key, n) not in self.levels:
            self.levels[target.key, n] = self.measure(target, n)
            self.log_level(target, n)
        return self.levels[target.key, n]

    def measure(self, target: Target, n: int) -> dict:
        specs = self.specs(target, n, "go", time.monotonic() + 0.3, self.args.ramp if n > 1 else 0)
        pids = target.pids()
        cpu0, up0 = relay_targets.cpu_s(pids), relay_targets.cpu_s([self.upstream.proc.pid])
        wall0 = time.monotonic()
        outs, peak = self.clients.run(self.split(target, specs), sample=lambda: relay_targets.rss_kb(pids))
        wall = time.monotonic() - wall0
        cpu, up = relay_targets.cpu_s(pids) - cpu0, relay_targets.cpu_s([self.upstream.proc.pid]) - up0
        results = [r for out in outs for r in out["streams"]]
        summary = self.summarise(target, results)
        tokens = sum(len(r["text"].split()) for r in results)
        per_1k = 1000 / tokens * 1000 if tokens else None
        summary.update(
            server_cpu_ms_per_1k=cpu * per_1k if pids and per_1k else None,
            upstream_cpu_ms_per_1k=up * per_1k if per_1k else None,
            client_cpu_ms_per_1k=sum(o["cpu_s"] for o in outs) * per_1k if per_1k else None,
            client_cpu_busiest=max(o["cpu_s"] for o in outs) / wall,
            upstream_cpu_busy=up / wall,
            rss_kb_per_stream=(peak - self.idle_rss[target.key]) / n if pids else None,
            rss_idle_kb=self.idle_rss.get(target.key),
            rss_peak_kb=peak or None,
            tokens=tokens,
            wall_s=wall,
        )
        if n == 1:
            self.probe_ttft(target, summary)
        return summary

    def probe_ttft(self, target: Target, summary: dict) -> None:
        """One stream's TTFT from short answers in a row, spaced so that they never overlap."""
        t0 = time.monotonic() + 0.2
        specs = [
            {**spec, "start_at": t0 + 0.25 * i}
            for i, spec in enumerate(self.specs(target, TTFT_PROBES, "[script:ttft] probe", t0, 0))
        ]
        outs, _ = self.clients.run([self.job(target, specs)])
        results = [r for out in outs for r in out["streams"]]
        probes = self.summarise(target, results, expected="w0 w1 w2 ")
        summary["ttft_ms"] = sorted(summary["ttft_ms"] + probes["ttft_ms"])
        for key in ("errors", "answers", "exact"):
            summary[key] += probes[key]
        summary["error_kinds"] = dict(Counter(summary["error_kinds"]) + Counter(probes["error_kinds"]))

    def summarise(self, target: Target, results: list[dict], expected: str | None = None) -> dict:
        """Latencies, errors and exactness of finished streams (streamed == stored, or == the script)."""
        expected = self.expected if expected is None else expected
        stored = target.stored({r["conv"] for r in results if r["conv"]}) if target.stores else {}
        errors = Counter(error_of(r, expected) for r in results if error_of(r, expected))
        if target.stores:
            exact = sum(stored.get(r["message_id"]) == r["text"] for r in results)
        else:
            exact = sum(r["text"] == expected for r in results if r["status"] == "complete")
        return {
            "answers": len(results),
            "ttft_ms": sorted((r["first"] - r["start"]) * 1000 for r in results if r["first"]),
            "gaps_ms": [g for r in results for g in r["gaps"]],
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "exact": exact,
        }

    def log_level(self, target: Target, n: int) -> None:
        m = self.levels[target.key, n]
        ttft = f"{fmt(pct(m['ttft_ms'], 0.5))} / {fmt(pct(m['ttft_ms'], 0.99))}"
        errors = f"{m['errors']} {m['error_kinds']}" if m["errors"] else "0"
        log(
            f"{target.label}, {n} streams: TTFT p50 / p99 {ttft} ms, gap p99 {fmt(pct(m['gaps_ms'], 0.99))} ms,"
            f" errors {errors}, exact {m['exact']}/{m['answers']}"
        )

    # --- what the table shows ----------------------------------------------------------------

    def overhead(self, target: Target, n: int, q: float) -> float | None:
        """TTFT percentile over the direct upstream's at the same concurrency."""
        mine, direct = pct(self.level(target, n)["ttft_ms"], q), pct(self.level(self.direct, n)["ttft_ms"], q)
        return None if mine is None or direct is None else mine - direct

    def within_bounds(self, target: Target, n: int) -> bool:
        m = self.level(target, n)
        if target.key == "direct":  # the harness's own ceiling: TTFT over the script's first delay
            over = pct(m["ttft_ms"], 0.99) - self.upstream.script["first_delay"] * 1000
        else:
            over = self.overhead(target, n, 0.99)
        gap = pct(m["gaps_ms"], 0.99)
        return (
            m["errors"] == 0 and over is not None and over <= TTFT_BOUND_MS and gap is not None and gap <= GAP_BOUND_MS
        )

    def capacity(self, target: Target) -> dict:
        """The most streams within the bounds, trying --capacity levels in order; stops at the first miss.
        Below the first level it halves (50, 25...) so that a target that misses it still gets a number."""
        passed = 0
        for n in self.args.capacity:
            if not self.within_bounds(target, n):
                return {"streams": passed or self.capacity_below(target, n), "first_miss": n, "floor": CAPACITY_FLOOR}
            passed = n
        return {"streams": passed, "first_miss": None, "floor": CAPACITY_FLOOR}

    def capacity_below(self, target: Target, n: int) -> int:
        while (n := n // 2) >= CAPACITY_FLOOR:
            if self.within_bounds(target, n):
                return n
        return 0

    def stops(self, target: Target, stop_by: str | None = None) -> dict:
        """Stop -> upstream closed, for --stops stops spread out while --stop-load streams keep running.
        `stop_by` "ws": chatsite's Stop as the page sends it, a cancel frame on the conversation's WebSocket."""
        self.upstream.clear()
        outs, _ = self.clients.run([self.job(target, self.stop_specs(target), stop_by=stop_by)])
        time.sleep(1.0)  # a close not seen by now counts as never
        results = [r for out in outs for r in out["streams"]]
        closed = {row["content"].split()[-1]: row["closed_at"] for row in self.upstream.records(f"stop-{target.key}-")}
        load = self.summarise(target, [r for r in results if not r["tag"]])
        return {
            **self.stop_summary(target, [r for r in results if r["tag"]], closed),
            "load_answers": load["answers"],
            "load_errors": load["errors"],
            "load_error_kinds": load["error_kinds"],
            "load_exact": load["exact"],
        }

    def stop_specs(self, target: Target) -> list[dict]:
        """The load (each slot asks again as soon as an answer ends, until the stops are done), and the
        long answers to stop, each tagged so that the upstream's records tell when it was closed."""
        load, count = self.args.stop_load, self.args.stops
        t0 = time.monotonic() + 0.3
        first_stop = t0 + self.args.ramp + 0.5
        background = self.specs(target, load, "go", t0, self.args.ramp)
        for spec in background:
            spec["repeat_until"] = first_stop + count * STOP_SPACING_S
        stoppers = self.specs(target, count, "", first_stop, count * STOP_SPACING_S)
        for k, spec in enumerate(stoppers):
            tag = f"stop-{target.key}-{k}"
            spec.update(target.request(f"[script:long] {tag}", spec.get("conv")), tag=tag, stop_after=2)
        return background + stoppers

    def stop_summary(self, target: Target, stopped: list[dict], closed: dict[str, float | None]) -> dict:
        latencies = [
            (closed[r["tag"]] - r["stop_sent"]) * 1000
            for r in stopped
            # A client that gave up on a stop closed the stream itself: that close is not the stop's.
            if r["stop_sent"] and (closed.get(r["tag"]) or 0) >= r["stop_sent"] and r["error"] != relay_client.GAVE_UP
        ]
        ended = [r for r in stopped if r["status"]]
        expected_status = "closed" if target.stop_by == "close" else "cancelled"
        return {
            "stops": len(stopped),
            "upstream_closed": len(latencies),
            "ms": sorted(latencies),
            "stopped_as_expected": sum(r["status"] == expected_status for r in stopped),
            "stop_outcomes": dict(Counter(f"{r['status']}{', ' + r['error'] if r['error'] else ''}" for r in stopped)),
            # Over the stopped answers that ended with `done`, as a page would have them.
            "stopped_exact": self.summarise(target, ended)["exact"] if target.stores else None,
            "stopped_ended": len(ended),
        }


def error_of(result: dict, expected: str) -> str | None:
    """What went wrong with a stream, if anything: a complete answer must also be the script's text."""
    if result["error"] or result["status"] not in ("complete", "closed", "cancelled"):
        return result["error"] or f"status {result['status']}"
    if result["status"] == "complete" and result["text"] != expected:
        return "text differs from the script"
    return None


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- the run -----------------------------------------------------------------------------------


def start_targets(stack: ExitStack, args: argparse.Namespace, upstream: Upstream, work: Path) -> tuple[list, dict]:
    """Start what --targets names; one that cannot start is left out with its reason."""
    starters = {
        "reference": relay_targets.reference_relay,
        "chatsite": relay_targets.chatsite_single,
        "uvicorn": relay_targets.chatsite_uvicorn,
        "cluster": relay_targets.chatsite_cluster,
    }
    targets, skipped = [upstream.target()] if "direct" in args.targets else [], {}
    if {"chatsite", "uvicorn", "cluster"} & set(args.targets):
        relay_targets.collect_static()
    for key in args.targets:
        if key in starters:
            try:
                targets.append(stack.enter_context(starters[key](upstream, work / key)))
                log(f"started {targets[-1].label} (port {targets[-1].port})")
            except Exception as exc:
                skipped[key] = f"{exc.__class__.__name__}: {str(exc)[:300]}"
                log(f"could not start {key}: {skipped[key]}")
    return targets, skipped


def measure_all(bench: Bench, targets: list[Target], args: argparse.Namespace) -> dict:
    """Every level for every target (direct first at each), then capacities, then stops."""
    for target in targets:
        bench.warm_up(target)
    for n in args.levels:
        for target in targets:
            bench.level(target, n)
    capacity = {t.key: bench.capacity(t) for t in targets} if args.capacity else {}
    stops, stops_ws = {}, {}
    if args.stops:
        for target in targets:
            stops[target.key] = bench.stops(target)
            ms = stops[target.key]["ms"]
            log(f"{target.label}: stop -> upstream closed p50 {fmt(pct(ms, 0.5), 1)} p99 {fmt(pct(ms, 0.99), 1)} ms")
            if target.stores:  # and as the page stops: over the WebSocket, HTTP being its fallback
                stops_ws[target.key] = bench.stops(target, stop_by="ws")
                ms = stops_ws[target.key]["ms"]
                log(f"{target.label}: over the WebSocket p50 {fmt(pct(ms, 0.5), 1)} p99 {fmt(pct(ms, 0.99), 1)} ms")
    return {"capacity": capacity, "stops": stops, "stops_ws": stops_ws}


def embedded_model(args: argparse.Namespace) -> dict | None:
    """bench/embedded.py in a process of its own (it starts the model server and a daphne)."""
    if not args.embedded_runs:
        return None
    command = [sys.executable, "-m", "bench.embedded", "--runs", str(args.embedded_runs), "--json"]
    result = subprocess.run(command, cwd=relay_targets.ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"error": (result.stderr or result.stdout)[-500:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def source() -> dict:
    """The commit measured, and whether chat/ or chatsite/ had uncommitted changes (work in progress)."""

    def git(*args: str) -> str | None:
        result = subprocess.run(["git", *args], cwd=relay_targets.ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    changed = bool(git("status", "--porcelain", "--", "chat", "chatsite")) if commit else None
    return {"commit": commit, "app_uncommitted_changes": changed}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--quick", action="store_true", help="fewer points: levels 1,100; capacity 100,200; 30 stops")
    parser.add_argument("--targets", default="direct,reference,chatsite,uvicorn,cluster", type=lambda s: s.split(","))
    parser.add_argument("--levels", type=ints, default=[1, 100, 300], help="concurrent streams for the table")
    parser.add_argument("--capacity", type=ints, default=[100, 200, 300, 400, 600], help="'' to skip the search")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which a level's streams start")
    parser.add_argument("--split-at", type=int, default=200, help="streams from which two load clients share them")
    parser.add_argument("--stops", type=int, default=100, help="stops to time (0: none)")
    parser.add_argument("--stop-load", type=int, default=100, help="streams running while they happen")
    parser.add_argument("--embedded-runs", type=int, default=3, help="SmolLM2 runs each way (0: skip)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--first-delay", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/relay-<date>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.capacity, args.stops, args.stop_load = [1, 100], [100, 200], 30, 50
        args.embedded_runs = min(args.embedded_runs, 1)
    return args


def config(args: argparse.Namespace) -> dict:
    return {
        "script": {"tokens": args.tokens, "rate": args.rate, "first_delay_s": args.first_delay},
        "levels": args.levels,
        "capacity_levels": args.capacity,
        "bounds_ms": {"ttft_over_direct_p99": TTFT_BOUND_MS, "gap_p99": GAP_BOUND_MS},
        "ramp_s": args.ramp,
        "two_load_clients_from": args.split_at,
        "ttft_probes_at_1": TTFT_PROBES,
        "stops": args.stops,
        "stop_load": args.stop_load,
        "embedded_runs": args.embedded_runs,
    }


def compact(bench: Bench, target: Target, n: int) -> dict:
    """A level as the JSON keeps it: percentiles, not every latency."""
    m = bench.level(target, n)
    over = None if target.key == "direct" else {q: bench.overhead(target, n, v) for q, v in PERCENTILES}
    return {
        "answers": m["answers"],
        "ttft_ms": {q: pct(m["ttft_ms"], v) for q, v in PERCENTILES},
        "ttft_over_direct_ms": over,
        "gap_ms": {**{q: pct(m["gaps_ms"], v) for q, v in PERCENTILES}, "max": max(m["gaps_ms"], default=None)},
        "within_bounds": bench.within_bounds(target, n),
        "exact_means": "streamed == stored" if target.stores else "streamed == script",
        **{k: v for k, v in m.items() if k not in ("ttft_ms", "gaps_ms", "answers")},
    }


def results(bench: Bench, targets: list[Target], extra: dict) -> dict:
    out = {}
    for target in targets:
        stops, stops_ws = (with_percentiles(extra[k].get(target.key)) for k in ("stops", "stops_ws"))
        out[target.key] = {
            "label": target.label,
            "levels": {str(n): compact(bench, target, n) for (key, n) in sorted(bench.levels) if key == target.key},
            "capacity": extra["capacity"].get(target.key),
            "stops": stops,
            "stops_ws": stops_ws,
        }
    return {"targets": out}


def with_percentiles(stops: dict | None) -> dict | None:
    if stops:
        ms = stops.pop("ms")
        stops.update(p50_ms=pct(ms, 0.5), p99_ms=pct(ms, 0.99), max_ms=max(ms, default=None))
    return stops


PERCENTILES = (("p50", 0.5), ("p99", 0.99))


def run(args: argparse.Namespace, work: Path) -> dict:
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(), "source": source()}
    with ExitStack() as stack:
        upstream = Upstream(tokens=args.tokens, rate=args.rate, first_delay=args.first_delay)
        stack.callback(upstream.stop)
        clients = Clients(2)
        stack.callback(clients.close)
        targets, skipped = start_targets(stack, args, upstream, work)
        bench = Bench(args, upstream, clients)
        extra = measure_all(bench, targets, args)
        summary = results(bench, targets, extra)  # with the servers up: it may want a direct level not run yet
    log("the embedded model (every other server stopped)")
    summary["embedded"] = embedded_model(args)
    report.update(config=config(args), skipped=skipped, **summary)
    report["wall_s"] = round(time.monotonic() - START, 1)
    return report


def rounded(value):
    """Floats to 2 decimals, all the way down: the JSON stays readable and diffs stay small."""
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    try:
        report = run(args, work)
    except BaseException:
        print(f"failed; the servers' logs are in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print(relay_report.render(report))
    out = args.out or RESULTS / f"relay-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rounded(report), indent=1) + "\n")
    print(f"\nJSON written to {out}")


if __name__ == "__main__":
    main()
