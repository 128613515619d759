"""Two workers behind nginx (chatsite/nginx.conf.template): streams pass unbuffered, requests spread
over both workers with no sticky sessions, WebSockets upgrade."""

import json
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.live import Event, iter_sse, text_of


def test_a_stream_through_nginx_arrives_token_by_token(cluster, upstream):
    client = cluster.new_client("nina")
    cid = client.new_conversation()
    upstream.push(tokens=30, rate=50)  # about 0.6 s from first token to last
    events: list[Event] = []
    arrivals: list[float] = []
    with client.post_stream(cid, "through nginx") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in r.headers  # httpx asked for gzip: nginx must not
        for item in iter_sse(r.iter_lines()):
            if isinstance(item, Event):
                events.append(item)
                if item.event == "token":
                    arrivals.append(time.monotonic())
    ended = time.monotonic()
    assert events[-1].event == "done" and events[-1].data["status"] == "complete", events[-2:]
    # Buffered, every token would arrive at once with the end of the response.
    assert arrivals[-1] - arrivals[0] > 0.3
    assert ended - arrivals[0] > 0.3
    streamed = text_of(events)
    assert streamed == "".join(f"w{i} " for i in range(30))
    assert client.answer(cid)["content"] == streamed  # read back through nginx: maybe the other worker


def test_requests_through_nginx_reach_both_workers(cluster):
    client = cluster.new_client("olga")  # logged in through nginx: the session works on either worker
    cid = client.new_conversation()
    for _ in range(6):
        assert client.conversation(cid)["id"] == cid
    served = cluster.served_by()
    assert len(served) >= 8 and set(served) == {0, 1}


def test_a_dead_worker_costs_no_page_load(cluster):
    client = cluster.new_client("pia")
    cid = client.new_conversation()
    cluster.kill(0)
    for _ in range(4):  # nginx passes a refused GET on to the live worker
        assert client.http.get(f"/api/conversations/{cid}/").status_code == 200
    cluster.restart(0)
    assert cluster.worker_client(0, "pia").conversation(cid)["id"] == cid


def test_a_websocket_upgrade_passes_through_nginx(cluster):
    client = cluster.new_client("rosa")
    cid = client.new_conversation()
    url = f"ws://127.0.0.1:{cluster.port}/ws/conversations/{cid}/"
    cookie = {"Cookie": f"sessionid={client.http.cookies['sessionid']}"}
    with connect(url, origin=cluster.base_url, additional_headers=cookie, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "no-such-frame"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "error"  # a round trip, and the socket stays open
        ws.send(json.dumps({"type": "typing", "typing": False}))
    with pytest.raises(InvalidStatus):  # and nginx does not hide the Origin from the app
        connect(url, origin="http://elsewhere.example", additional_headers=cookie, open_timeout=5).close()
