"""Server-Sent Events framing: pure functions over bytes, no Django.

Each event is encoded once, when it is produced; every subscriber then sends the same bytes.
"""

import json
import re

PING = b": ping\n\n"
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


def encode_event(seq: int, event: str, data: dict) -> bytes:
    """One SSE event with an id, a name and a single `data:` line of JSON."""
    # json.dumps escapes newlines inside strings, so the payload is always one line.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: {event}\ndata: {payload}\n\n".encode()


def encode_retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The client's Last-Event-ID as a non-negative int; None when absent, ValueError when bad.

    Our ids are ASCII digits, so only those are accepted: str.isdigit() and int() also take
    other scripts' digits (full-width, Arabic-Indic, ...), which no client of ours sends. At most
    18 digits keep the id within a 64-bit integer; an id past the answer's end replays its `done`.
    """
    if value is None:
        return None
    value = value.strip(" \t")
    if value == "":
        return None
    if not _ASCII_DIGITS.fullmatch(value):
        raise ValueError(value)
    return int(value)
