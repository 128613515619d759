"""Under any timing of cancel, disconnect and resume, the text streamed is the text stored.

Hypothesis picks the answer's length and speed, when the client acts and what it does; the live
server, the scripted upstream and the real HTTP client do the rest.
"""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live import EventStream, read_all, text_of

ACTIONS = ("read", "cancel", "disconnect", "disconnect_resume")


def wait_until_settled(client, cid: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.answer(cid)
        if answer["status"] != "streaming":
            return answer
        time.sleep(0.05)
    raise AssertionError("the answer never settled")


@settings(
    max_examples=16,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tokens=st.integers(1, 60),
    rate=st.sampled_from([0, 300, 1000]),
    after=st.integers(1, 40),
    action=st.sampled_from(ACTIONS),
    pause=st.sampled_from([0, 0.05, 0.3]),
)
def test_streamed_text_equals_stored_text_whatever_the_timing(alice, upstream, tokens, rate, after, action, pause):
    upstream.reset()
    upstream.push(tokens=tokens, rate=rate)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "go") as r:
        stream = EventStream(r)
        seen = stream.events(limit=after)
        answer_id = seen[0].data["message_id"]
        time.sleep(pause)
        if action == "cancel":
            status = alice.cancel(answer_id).json()["status"]
            assert status in ("cancelled", "complete")
        if action in ("read", "cancel"):
            seen += stream.events()
    if action == "disconnect_resume":
        with alice.resume_stream(answer_id, seen[-1].id) as r:
            seen += read_all(r)
    if action == "disconnect":
        stored = wait_until_settled(alice, cid)
        assert stored["content"].startswith(text_of(seen))  # what was seen, and what was relayed after
    else:
        assert seen[-1].event == "done"
        assert [int(e.id) for e in seen] == list(range(1, len(seen) + 1))  # no gap, no repeat
        stored = alice.answer(cid)
        assert stored["status"] == seen[-1].data["status"]
        assert stored["content"] == text_of(seen)
    with alice.resume_stream(answer_id, 0) as r:  # and a replay from the start says the same
        replay = read_all(r)
    assert text_of(replay) == stored["content"] and replay[-1].data["status"] == stored["status"]
    assert stored["content"] == "".join(f"w{i} " for i in range(stored["content"].count(" ")))
