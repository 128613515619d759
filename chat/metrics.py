"""Prometheus metrics of the answers this process generates, and the tiny calls that record them.

`generation.py` calls answer_started() when an answer starts, token() for each token and
answer_ended() once it is stored; `ops.py` serves them at /metrics. token() is on the per-token
path: one clock read and two increments.

Several worker processes (PROMETHEUS_MULTIPROC_DIR set, as `manage.py runcluster` does) write
their values to memory-mapped files in that directory, and a scrape of any one of them sums the
files of all (prometheus_client's multiprocess mode), so /metrics through nginx shows the cluster.
The directory must be emptied before the workers start: `cluster.fresh_metrics_dir()`.
"""

import os
from time import monotonic

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)  # each metric opens its file there as it is made, just below

TTFT = Histogram(
    "chat_time_to_first_token_seconds",
    "From the start of an answer to its first token.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_GAP = Histogram(
    "chat_inter_token_gap_seconds",
    "Between two consecutive tokens of an answer.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
TOKENS = Counter("chat_tokens", "Tokens streamed (content deltas from the upstream).")
ACTIVE = Gauge(
    "chat_active_streams",
    "Answers being generated now.",
    multiprocess_mode="livesum",  # the sum over live workers; a dead worker's files are dropped at scrape
)
ANSWERS = Counter("chat_answers", "Answers ended, by final status.", ["status"])
UPSTREAM_ERRORS = Counter("chat_upstream_errors", "Answers ended by an upstream failure, by error code.", ["code"])
# Once per retry of an upstream call that failed before its first token (llm.stream_chat).
UPSTREAM_RETRIES = Counter("chat_upstream_retries", "Upstream calls tried again after a failure.")

for _status in ("complete", "cancelled", "interrupted", "error"):
    ANSWERS.labels(_status)  # present at 0 from the start, so rate() sees the first one

# Bound once: the token path pays for no attribute lookups.
_ttft = TTFT.observe
_gap = TOKEN_GAP.observe
_token = TOKENS.inc


def answer_started() -> None:
    ACTIVE.inc()


def token(started: float, last: float, count: int = 1) -> float:
    """`count` tokens arrived together in an answer started at `started` whose previous ones came
    at `last` (0: none); returns now, the next call's `last` (time.monotonic() throughout)."""
    now = monotonic()
    if last:
        _gap(now - last)
    else:
        _ttft(now - started)
    _token(count)
    return now


def answer_ended(status: str, error_code: str = "") -> None:
    ACTIVE.dec()
    ANSWERS.labels(status).inc()
    if error_code.startswith("upstream_"):
        UPSTREAM_ERRORS.labels(error_code).inc()


def exposition() -> bytes:
    """The text a scrape gets: this process's metrics, or every worker's summed in multiprocess mode."""
    if not MULTIPROC_DIR:
        return generate_latest(REGISTRY)
    _forget_dead_workers()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    return generate_latest(registry)


def _forget_dead_workers() -> None:
    """A worker killed outright leaves its active-streams file behind: drop it, or its last value counts forever.
    (Its counters and histograms stay: they happened.)"""
    for name in os.listdir(MULTIPROC_DIR):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name.rsplit("_", 1)[1].removesuffix(".db")
            if pid.isdigit() and not _alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), MULTIPROC_DIR)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
