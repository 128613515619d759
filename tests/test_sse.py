"""SSE framing: one event per frame, one data line, exact ids."""

import json

import pytest

from chat import sse


def test_an_event_is_one_frame_with_id_name_and_one_data_line():
    frame = sse.encode_event(7, "token", {"text": "line one\nline two ✓"}).decode()
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert lines[:2] == ["id: 7", "event: token"]
    assert len(lines) == 3 and lines[2].startswith("data: ")
    assert json.loads(lines[2][6:]) == {"text": "line one\nline two ✓"}


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("0", 0), (" 42 ", 42)])
def test_last_event_id_parses(raw, expected):
    assert sse.parse_last_event_id(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "x", "1e3", "9" * 19])
def test_bad_last_event_ids_are_refused(raw):
    with pytest.raises(ValueError):
        sse.parse_last_event_id(raw)
