"""Reading a streamed chat completion's raw body (chat/llm.py ChunkReader): what the upstream
sent, in any chunking and line ending, becomes exactly the text the user sees."""

import json

import pytest

from chat.llm import ChunkReader, UpstreamError


def body(*texts: str, finish: str = "stop", sep: str = "\n\n") -> bytes:
    chunks = [{"choices": [{"delta": {"content": t}, "finish_reason": None}]} for t in texts]
    chunks.append({"choices": [{"delta": {}, "finish_reason": finish}]})
    events = [f"data: {json.dumps(c)}" for c in chunks] + ["data: [DONE]"]
    return "".join(e + sep for e in events).encode()


def read(reader: ChunkReader, pieces: list[bytes]) -> tuple[str, list[str]]:
    text, reasons = "", []
    for piece in pieces:
        delta = reader.feed(piece)
        text += delta.text
        if delta.finish_reason:
            reasons.append(delta.finish_reason)
    return text, reasons


@pytest.mark.parametrize("sep", ["\n\n", "\r\n\r\n", "\r\r"], ids=["LF", "CRLF", "CR"])
def test_any_chunking_and_line_ending_gives_the_same_text(sep):
    raw = body("Hé", "llo ", "wörld 😀", sep=sep)
    for size in (1, 2, 3, 7, len(raw)):
        reader = ChunkReader()
        text, reasons = read(reader, [raw[i : i + size] for i in range(0, len(raw), size)])
        assert (text, reasons) == ("Héllo wörld 😀", ["stop"]), size
        assert reader.finished and reader.ended and reader.failure is None


def test_chunks_that_arrive_together_become_one_delta_counting_each():
    delta = ChunkReader().feed(body("a", "b", "c"))
    assert (delta.text, delta.count, delta.finish_reason) == ("abc", 3, "stop")


def test_an_error_chunk_keeps_the_text_read_before_it(caplog):
    raw = body("w0 ", "w1 ")[: -len(b"data: [DONE]\n\n")]
    raw = raw.replace(b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\n', b"")
    raw += b'data: {"error": {"message": "overloaded"}}\n\ndata: {"choices": [{"delta": {"content": "late"}}]}\n\n'
    reader = ChunkReader()
    delta = reader.feed(raw)
    assert delta.text == "w0 w1 "  # shown and stored; nothing after the error
    assert reader.failure == UpstreamError("upstream_error", "The model server failed while answering.")
    assert "overloaded" in caplog.text  # the upstream's own words go to the log, not to the user
    assert not reader.finished


def test_an_error_event_fails_even_without_an_error_key(caplog):
    reader = ChunkReader()
    reader.feed(b'event: error\ndata: {"message": "boom"}\n\n')
    assert reader.failure is not None and reader.failure.code == "upstream_error"
    assert "boom" not in reader.failure.message and "boom" in caplog.text


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"'])
def test_a_malformed_chunk_fails_at_once(payload):
    reader = ChunkReader()
    delta = reader.feed(b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\ndata: ' + payload + b"\n\n")
    assert delta.text == "ok"
    assert reader.failure is not None and reader.failure.code == "upstream_bad_chunk"


def test_lone_surrogate_halves_in_two_chunks_join_into_one_character():
    raw = b'data: {"choices": [{"delta": {"content": "\\ud83d"}}]}\n\n'
    raw += b'data: {"choices": [{"delta": {"content": "\\ude00!"}, "finish_reason": "stop"}]}\n\n'
    reader = ChunkReader()
    text, _ = read(reader, [raw[:40], raw[40:]])
    assert text == "\U0001f600!"


def test_usage_chunks_comments_and_other_fields_are_ignored_and_done_ends_the_body():
    raw = b": keep-alive\n\nid: 3\nretry: 10\n\n"
    raw += b'data: {"choices": [], "usage": {"total_tokens": 5}}\n\n'
    raw += body("x")
    raw += b'data: {"choices": [{"delta": {"content": "after done"}}]}\n\n'
    reader = ChunkReader()
    delta = reader.feed(raw)
    assert (delta.text, delta.count, reader.ended) == ("x", 1, True)
