"""The side-by-side table and issue 8's targets, from bench/relay.py's JSON.

.venv/bin/python -m bench.relay_report bench/results/relay-<date>.json   # print a past run again
"""

import json
import sys
from pathlib import Path

COLUMNS = ("direct", "reference", "chatsite", "uvicorn", "cluster")
HEADINGS = {
    "direct": "direct upstream",
    "reference": "reference relay",
    "chatsite": "chatsite 1 process",
    "uvicorn": "chatsite on uvicorn",
    "cluster": "chatsite 2 workers",
}
CPU_LEVEL, RSS_LEVEL, LOAD_LEVEL = "100", "300", "300"  # where each target of the issue is read


def ms(value: float | None, sign: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{sign}.1f}" if abs(value) < 100 else f"{value:{sign}.0f}"


def pair(values: dict | None, sign: str = "") -> str:
    return "-" if not values else f"{ms(values['p50'], sign)} / {ms(values['p99'], sign)}"


def level_rows(report: dict, n: str) -> list[tuple[str, dict]]:
    """The rows for one concurrency: a cell per target that ran it."""
    levels = {key: t["levels"][n] for key, t in report["targets"].items() if n in t["levels"]}

    def row(label: str, cell) -> tuple[str, dict]:
        return label, {key: cell(m) for key, m in levels.items()}

    return [
        (f"{n} concurrent stream{'s' if n != '1' else ''}", {}),
        row("  TTFT p50 / p99, ms", lambda m: pair(m["ttft_ms"])),
        row("  TTFT over direct p50 / p99, ms", lambda m: pair(m["ttft_over_direct_ms"], "+")),
        row("  inter-token gap p99, ms", lambda m: ms(m["gap_ms"]["p99"])),
        row("  server CPU per 1,000 tokens, ms", lambda m: ms(m["server_cpu_ms_per_1k"])),
        row("  RSS growth per stream, KB", lambda m: ms(m["rss_kb_per_stream"])),
        row("  errors", lambda m: str(m["errors"])),
        row("  exact (stored, or script)", lambda m: f"{m['exact']}/{m['answers']}"),
    ]


def capacity_cell(capacity: dict | None) -> str:
    if not capacity:
        return "-"
    if capacity["first_miss"] is None:
        return f">= {capacity['streams']}"
    return str(capacity["streams"]) if capacity["streams"] else f"< {capacity['floor']}"


def stop_cells(report: dict, kind: str = "stops") -> tuple[dict, dict]:
    latency, closed = {}, {}
    for key, t in report["targets"].items():
        if s := t.get(kind):
            latency[key] = f"{ms(s['p50_ms'])} / {ms(s['p99_ms'])}"
            closed[key] = f"{s['upstream_closed']}/{s['stops']}"
    return latency, closed


def embedded_cells(report: dict) -> dict:
    e = report.get("embedded")
    if not e or "error" in e:
        return {"chatsite": "failed" if e else "-"}
    share = e["app"]["tokens_per_s"] / e["direct"]["tokens_per_s"] * 100
    return {
        "direct": f"{e['direct']['tokens_per_s']:.1f}",
        "chatsite": f"{e['app']['tokens_per_s']:.1f} ({share:.0f}%)",
    }


def table(report: dict) -> str:
    keys = [k for k in COLUMNS if k in report["targets"]]
    n_levels = sorted({int(n) for t in report["targets"].values() for n in t["levels"]})
    shown = [str(n) for n in report["config"]["levels"] if n in n_levels]
    rows = [row for n in shown for row in level_rows(report, n)]
    latency, closed = stop_cells(report)
    ws_latency, ws_closed = stop_cells(report, "stops_ws")
    bounds = report["config"]["bounds_ms"]
    rows += [
        ("capacity, streams (*)", {k: capacity_cell(report["targets"][k].get("capacity")) for k in keys}),
        ("stop -> upstream closed p50 / p99, ms", latency),
        ("  stops that closed the upstream", closed),
        ("  chatsite, Stop over the WebSocket, ms", ws_latency),
        ("  stops that closed the upstream", ws_closed),
        ("embedded SmolLM2 tokens/s (**)", embedded_cells(report)),
    ]
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"{'':<{width}}" + "".join(f"{HEADINGS[k]:>20}" for k in keys)]
    for label, cells in rows:
        lines.append(f"{label:<{width}}" + "".join(f"{cells.get(k, '-') if cells else '':>20}" for k in keys))
    lines += [
        f"(*) the most streams with 0 errors, TTFT over direct p99 <= {bounds['ttft_over_direct_p99']:.0f} ms"
        f" and gap p99 <= {bounds['gap_p99']:.0f} ms; stops while {report['config']['stop_load']} streams run",
        "(**) direct: the model's own server; chatsite: through the app, and its share of direct",
    ]
    return "\n".join(line.rstrip() for line in lines)


# --- issue 8's targets, for chatsite's one-process column ---------------------------------------


def targets(report: dict) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) — None when this run cannot tell."""
    t = report["targets"]
    chat, ref = t.get("chatsite"), t.get("reference")
    if not chat:
        return []
    rows = []
    one = chat["levels"].get("1")
    if one:
        over = one["ttft_over_direct_ms"]["p50"]
        rows.append(("TTFT over direct, 1 stream, p50 <= 3 ms", f"{ms(over, '+')} ms", over is not None and over <= 3))
    rows.append(cpu_target(chat, ref))
    rows.append(capacity_target(chat, ref))
    rows.append(load_target(chat, report["config"]["bounds_ms"]))
    rss = chat["levels"].get(RSS_LEVEL, {}).get("rss_kb_per_stream")
    rows.append((f"RSS per stream <= 100 KB (at {RSS_LEVEL})", f"{ms(rss)} KB", None if rss is None else rss <= 100))
    # Judged as the page stops: over the WebSocket (HTTP is its fallback), when this run measured it.
    stops, http = chat.get("stops_ws") or chat.get("stops"), chat.get("stops")
    p99 = stops and stops["p99_ms"]
    all_closed = bool(stops) and stops["upstream_closed"] == stops["stops"]
    how = "over the WebSocket" if chat.get("stops_ws") else "over HTTP"
    also = f" (HTTP cancel call: {ms(http['p99_ms'])} ms)" if chat.get("stops_ws") and http else ""
    rows.append(
        (
            "stop -> upstream closed under load, p99 <= 50 ms",
            f"{ms(p99)} ms {how}{also}",
            None if not stops else all_closed and p99 <= 50,
        )
    )
    rows.append(embedded_target(report.get("embedded")))
    return rows


def cpu_target(chat: dict, ref: dict | None) -> tuple[str, str, bool | None]:
    label = f"server CPU per 1,000 tokens <= 0.5 x reference's (at {CPU_LEVEL})"
    mine = chat["levels"].get(CPU_LEVEL, {}).get("server_cpu_ms_per_1k")
    theirs = ref and ref["levels"].get(CPU_LEVEL, {}).get("server_cpu_ms_per_1k")
    if not mine or not theirs:
        return label, "-", None
    return label, f"{mine:.0f} vs {theirs:.0f} ms ({mine / theirs:.2f}x)", mine <= 0.5 * theirs


def capacity_target(chat: dict, ref: dict | None) -> tuple[str, str, bool | None]:
    label = "capacity >= 2 x reference's"
    mine, theirs = chat.get("capacity"), ref and ref.get("capacity")
    if not mine or not theirs:
        return label, "-", None
    shown = f"{capacity_cell(mine)} vs {capacity_cell(theirs)}"
    if theirs["first_miss"] is None:  # the reference passed the whole search: only a shortfall is certain
        return label, shown, None if mine["first_miss"] is None else False
    if theirs["streams"] == 0:  # below the first level: twice that is anything that passed one
        return label, shown, True if mine["streams"] else None
    return label, shown, mine["streams"] >= 2 * theirs["streams"]


def load_target(chat: dict, bounds: dict) -> tuple[str, str, bool | None]:
    label = f"{LOAD_LEVEL} streams: 0 errors, exact, TTFT over direct p99 <= 150, gap p99 <= 60 ms"
    m = chat["levels"].get(LOAD_LEVEL)
    if not m:
        return label, "-", None
    over, gap = m["ttft_over_direct_ms"]["p99"], m["gap_ms"]["p99"]
    shown = f"{m['errors']} errors, exact {m['exact']}/{m['answers']}, +{ms(over)} ms, gap {ms(gap)} ms"
    met = (
        m["errors"] == 0
        and m["exact"] == m["answers"]
        and over is not None
        and over <= bounds["ttft_over_direct_p99"]
        and gap is not None
        and gap <= bounds["gap_p99"]
    )
    return label, shown, met


def embedded_target(embedded: dict | None) -> tuple[str, str, bool | None]:
    label = "embedded model through the app >= 95% of direct tokens/s"
    if not embedded or "error" in embedded:
        return label, "not measured" if not embedded else "failed", None
    share = embedded["app"]["tokens_per_s"] / embedded["direct"]["tokens_per_s"]
    return label, f"{share * 100:.0f}%", share >= 0.95


# --- the whole printout -------------------------------------------------------------------------


def harness(report: dict) -> str:
    """How we know the load client was not the bottleneck."""
    t = report["targets"]
    level = str(max(report["config"]["levels"]))
    costs = [
        f"{x['label']} {ms(m['client_cpu_ms_per_1k'])} vs {ms(m['server_cpu_ms_per_1k'])}"
        for x in t.values()
        if (m := x["levels"].get(level))
    ]
    busiest = max(m["client_cpu_busiest"] for x in t.values() for m in x["levels"].values())
    lines = [
        f"Load client check: its CPU per 1,000 tokens vs the server's at {level} streams: {'; '.join(costs)} ms;"
        f" its busiest process never used more than {busiest * 100:.0f}% of a core."
    ]
    if direct := t.get("direct"):
        top = str(max(int(n) for n in direct["levels"]))
        m = direct["levels"][top]
        lines.append(
            f"Direct upstream at {top} streams (the most tried): TTFT p99 {ms(m['ttft_ms']['p99'])} ms, gap p99"
            f" {ms(m['gap_ms']['p99'])} ms, client {m['client_cpu_busiest'] * 100:.0f}% and upstream"
            f" {m['upstream_cpu_busy'] * 100:.0f}% of a core."
        )
    return "\n".join(lines)


def render(report: dict) -> str:
    script = report["config"]["script"]
    m = report["machine"]
    src = report.get("source") or {}
    changes = " + uncommitted changes to the app" if src.get("app_uncommitted_changes") else ""
    lines = [
        f"Relay benchmark {report['date']}: {m['cpus']} x {m['cpu_model']}, Python {m['python']},"
        f" load average at start {m['load_average_at_start'][0]}; chatsite at {src.get('commit') or '?'}{changes}",
        f"Scripted upstream: {script['tokens']} tokens at {script['rate']:g}/s, first after"
        f" {script['first_delay_s'] * 1000:.0f} ms; streams start over {report['config']['ramp_s']:g} s",
        "",
        table(report),
        "",
        harness(report),
    ]
    for key, reason in report.get("skipped", {}).items():
        lines.append(f"Not measured: {key}: {reason}")
    checks = targets(report)
    if checks:
        lines += ["", "Issue 8 targets, chatsite 1 process:"]
        for label, value, met in checks:
            mark = {True: "met", False: "MISSED", None: "n/a"}[met]
            lines.append(f"  [{mark:>6}] {label}: {value}")
        if any(met is False for _, _, met in checks):
            lines.append("Where the time goes for those missed: bench/profile.py (`make bench` runs it next).")
    lines.append(f"\nWhole run: {report['wall_s'] / 60:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
