"""The scripted upstream (tests/upstream.py) in a process of its own, for bench/relay.py.

    .venv/bin/python -m bench.scripted_upstream [--tokens 200] [--rate 50] [--first-delay 0.05]

A process of its own, so it shares a GIL with neither the load client nor a server under test.
Prints one JSON line, {"port", "control"}, then serves until killed. Besides the default script it
knows two named ones: `[script:ttft]` (3 tokens: time-to-first-token probes) and `[script:long]`
(a stream long enough to be stopped midway). A small control server on its own port answers
`GET /records?contains=TEXT` with the requests whose last user message contains TEXT, and when
the client hung up on each (`time.monotonic()`, the same clock in every process on Linux);
`POST /clear` forgets the records so far.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.upstream import Record, Script, ScriptedUpstream


def record_row(record: Record) -> dict:
    users = [m.get("content") or "" for m in record.prompt if m.get("role") == "user"]
    return {
        "content": users[-1] if users else "",
        "opened": record.opened,
        "closed_at": record.client_closed_at,
        "tokens_sent": record.tokens_sent,
        "completed": record.completed,
    }


def control_server(upstream: ScriptedUpstream) -> ThreadingHTTPServer:
    class Control(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            contains = parse_qs(url.query).get("contains", [""])[0]
            rows = [record_row(r) for r in list(upstream.records)]
            self.answer([row for row in rows if contains in row["content"]])

        def do_POST(self) -> None:
            upstream.records.clear()
            self.answer({"cleared": True})

        def answer(self, data) -> None:
            payload = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # quiet: stdout carries the ports
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Control)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--first-delay", type=float, default=0.05)
    args = parser.parse_args()
    pace = {"rate": args.rate, "first_delay": args.first_delay}
    upstream = ScriptedUpstream(default=Script(tokens=args.tokens, **pace))
    upstream.name("ttft", tokens=3, **pace)
    upstream.name("long", tokens=3000, **pace)  # a minute: ends even if nobody closes it
    upstream.start()
    control = control_server(upstream)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({"port": upstream.port, "control": control.server_port}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
