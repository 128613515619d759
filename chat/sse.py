"""Server-Sent Events framing: pure functions over bytes, no Django.

Each event is encoded once, when it is produced; every subscriber then sends the same bytes.
"""

import json

PING = b": ping\n\n"


def encode_event(seq: int, event: str, data: dict) -> bytes:
    """One SSE event with an id, a name and a single `data:` line of JSON."""
    # json.dumps escapes newlines inside strings, so the payload is always one line.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: {event}\ndata: {payload}\n\n".encode()


def encode_retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The client's Last-Event-ID as a non-negative int; None when absent, ValueError when bad."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise ValueError(value)
    return int(value)
