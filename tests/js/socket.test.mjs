// Unit tests for the conversation WebSocket (static/chat/js/socket.js) with a fake WebSocket
// class and fake timers, and for the typing sender and indicator (static/chat/js/typing.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  SOCKET_DEFAULTS,
  createConversationSocket,
  parseServerFrame,
  reconnectDelay,
  socketUrl,
} from "../../static/chat/js/socket.js";
import { createTypingIndicator, createTypingSender, typingText } from "../../static/chat/js/typing.js";

/** Timers run by hand: advance(ms) fires what is due, in order. */
function fakeClock() {
  let now = 0;
  let nextId = 1;
  const pending = new Map(); // id -> {at, fn}
  return {
    now: () => now,
    timers: {
      setTimeout(fn, ms) {
        const id = nextId++;
        pending.set(id, { at: now + ms, fn });
        return id;
      },
      clearTimeout(id) {
        pending.delete(id);
      },
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...pending.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        pending.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
    },
    delays: () => [...pending.values()].map((t) => t.at - now),
  };
}

/** A WebSocket stand-in: records instances and what was sent; the test opens and closes them. */
function fakeWebSocketClass() {
  const instances = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      instances.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(text));
    }
    close(code) {
      this.closedWith = code;
      this.readyState = 3;
    }
    // test side
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
  }
  return { FakeWebSocket, instances };
}

function openSocket(extra = {}) {
  const clock = fakeClock();
  const { FakeWebSocket, instances } = fakeWebSocketClass();
  const seen = { generation: [], typing: [], error: [], status: [] };
  const socket = createConversationSocket({
    conversationId: 7,
    url: "ws://test/ws/conversations/7/",
    WebSocketImpl: FakeWebSocket,
    timers: clock.timers,
    now: clock.now,
    random: () => 1, // no jitter: the delay is the whole backoff step
    onGeneration: (f) => seen.generation.push(f),
    onTyping: (f) => seen.typing.push(f),
    onError: (f) => seen.error.push(f),
    onStatus: (s) => seen.status.push(s),
    ...extra,
  });
  return { socket, clock, instances, seen, last: () => instances[instances.length - 1] };
}

// --- pure parts ---------------------------------------------------------------------------------

test("the URL follows the page's scheme and host", () => {
  assert.equal(socketUrl(12, { protocol: "http:", host: "127.0.0.1:8000" }), "ws://127.0.0.1:8000/ws/conversations/12/");
  assert.equal(socketUrl(3, { protocol: "https:", host: "chat.example" }), "wss://chat.example/ws/conversations/3/");
});

test("backoff doubles from 0.5 s to a 15 s cap, with jitter between half and all of the step", () => {
  const top = [1, 2, 3, 4, 5, 6, 7, 12].map((n) => reconnectDelay(n, { random: () => 1 }));
  assert.deepEqual(top, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  const bottom = [1, 2, 6, 30].map((n) => reconnectDelay(n, { random: () => 0 }));
  assert.deepEqual(bottom, [250, 500, 7500, 7500]);
  for (let i = 0; i < 200; i += 1) {
    const d = reconnectDelay(1 + (i % 10));
    assert.ok(d >= 250 && d <= SOCKET_DEFAULTS.maxMs, `delay ${d}`);
  }
  assert.equal(reconnectDelay(1000, { random: () => 1 }), 15000, "no overflow for huge attempts");
});

test("server frames are checked against the protocol; anything else is null", () => {
  assert.deepEqual(parseServerFrame('{"type":"generation","message_id":5,"state":"started","extra":1}'), {
    type: "generation",
    message_id: 5,
    state: "started",
  });
  for (const state of ["finished", "cancelled", "error", "interrupted"]) {
    assert.equal(parseServerFrame(JSON.stringify({ type: "generation", message_id: 1, state })).state, state);
  }
  assert.deepEqual(parseServerFrame('{"type":"typing","user":"alice","typing":true}'), {
    type: "typing",
    user: "alice",
    typing: true,
  });
  assert.deepEqual(parseServerFrame('{"type":"error","code":"not_found","message":"No answer 9."}'), {
    type: "error",
    code: "not_found",
    message: "No answer 9.",
  });
  const bad = [
    "not json",
    "",
    "null",
    "[1]",
    '"text"',
    '{"type":"generation","message_id":"5","state":"started"}',
    '{"type":"generation","message_id":5.5,"state":"started"}',
    '{"type":"generation","message_id":5,"state":"paused"}',
    '{"type":"typing","user":"alice","typing":"yes"}',
    '{"type":"typing","typing":true}',
    '{"type":"presence","users":[]}',
    '{"message_id":5}',
  ];
  for (const text of bad) assert.equal(parseServerFrame(text), null, text);
  assert.equal(parseServerFrame(new ArrayBuffer(4)), null, "binary frames are ignored");
});

// --- the connection -----------------------------------------------------------------------------

test("frames reach their callbacks; bad ones are dropped without breaking the socket", () => {
  const { last, seen } = openSocket();
  last().open();
  last().receive({ type: "generation", message_id: 4, state: "started" });
  last().receive("{oops");
  last().receive({ type: "unknown" });
  last().receive({ type: "typing", user: "alice", typing: true });
  last().receive({ type: "error", code: "unknown_type", message: "no" });
  assert.deepEqual(seen.generation, [{ type: "generation", message_id: 4, state: "started" }]);
  assert.deepEqual(seen.typing, [{ type: "typing", user: "alice", typing: true }]);
  assert.deepEqual(seen.error, [{ type: "error", code: "unknown_type", message: "no" }]);
});

test("send returns false until open, then sends JSON; false again once closed", () => {
  const { socket, last } = openSocket();
  assert.equal(socket.isOpen(), false);
  assert.equal(socket.send({ type: "typing", typing: true }), false);
  last().open();
  assert.equal(socket.isOpen(), true);
  assert.equal(socket.send({ type: "cancel", message_id: 3 }), true);
  assert.deepEqual(last().sent, [{ type: "cancel", message_id: 3 }]);
  last().drop();
  assert.equal(socket.isOpen(), false);
  assert.equal(socket.send({ type: "cancel", message_id: 3 }), false);
});

test("refused handshakes back off exponentially to the cap, never spinning", () => {
  const { clock, instances } = openSocket();
  const waits = [];
  for (let i = 0; i < 9; i += 1) {
    instances[instances.length - 1].drop(1006); // closed before it ever opened
    const [delay] = clock.delays();
    waits.push(delay);
    assert.equal(instances.length, i + 1, "no new socket before the delay has passed");
    clock.advance(delay);
  }
  assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000, 15000]);
  assert.equal(instances.length, 10);
});

test("a stable connection resets the backoff; a short-lived one does not", () => {
  const { clock, instances, seen } = openSocket();
  instances[0].drop();
  clock.advance(500);
  instances[1].drop();
  clock.advance(1000);
  instances[2].open();
  clock.advance(1000); // open, but not for long
  instances[2].drop();
  assert.deepEqual(clock.delays(), [2000], "still backing off");
  clock.advance(2000);
  instances[3].open();
  clock.advance(SOCKET_DEFAULTS.stableMs);
  instances[3].drop();
  assert.deepEqual(clock.delays(), [500], "back to the first step after a stable connection");
  clock.advance(500);
  instances[4].open();
  const opens = seen.status.filter((s) => s.state === "open");
  assert.deepEqual(
    opens.map((s) => s.reconnected),
    [false, true, true],
    "every open after the first says frames may have been missed",
  );
});

test("close() is final: no reconnect, pending retry cancelled, the socket closed", () => {
  const { socket, clock, instances } = openSocket();
  instances[0].open();
  socket.close();
  assert.equal(instances[0].closedWith, 1000);
  instances[0].drop(1000); // the close event that follows
  clock.advance(60_000);
  assert.equal(instances.length, 1);

  const second = openSocket();
  second.instances[0].drop();
  assert.equal(second.clock.delays().length, 1);
  second.socket.close();
  second.clock.advance(60_000);
  assert.equal(second.instances.length, 1, "the scheduled retry was cancelled");
});

test("a 44xx close from the server is final", () => {
  const { clock, instances, seen } = openSocket();
  instances[0].open();
  instances[0].drop(4403);
  clock.advance(60_000);
  assert.equal(instances.length, 1);
  assert.equal(seen.status.at(-1).state, "refused");
});

test("events of a replaced connection are ignored", () => {
  const { clock, instances, seen } = openSocket();
  const old = instances[0];
  old.drop();
  clock.advance(500);
  instances[1].open();
  old.receive({ type: "generation", message_id: 1, state: "started" }); // a late straggler
  old.drop();
  assert.deepEqual(seen.generation, []);
  assert.equal(clock.delays().length, 0, "the live connection is not disturbed");
});

test("a constructor that throws (bad URL, blocked) is retried with backoff", () => {
  const clock = fakeClock();
  let made = 0;
  class Throwing {
    constructor() {
      made += 1;
      throw new Error("blocked");
    }
  }
  createConversationSocket({ conversationId: 1, url: "ws://x/", WebSocketImpl: Throwing, timers: clock.timers, now: clock.now, random: () => 1 });
  assert.deepEqual(clock.delays(), [500]);
  clock.advance(500);
  assert.deepEqual(clock.delays(), [1000]);
  assert.equal(made, 2);
});

// --- typing -----------------------------------------------------------------------------------

test("typing: true at most once a second while typing, false after 3 s idle", () => {
  const clock = fakeClock();
  const sent = [];
  const sender = createTypingSender({ send: (v) => sent.push(v) > 0, timers: clock.timers, now: clock.now });
  sender.input();
  clock.advance(200);
  sender.input();
  clock.advance(300);
  sender.input();
  assert.deepEqual(sent, [true]);
  clock.advance(600); // 1.1 s after the first
  sender.input();
  assert.deepEqual(sent, [true, true], "a repeat keeps the others' indicator alive");
  clock.advance(2999);
  assert.deepEqual(sent, [true, true]);
  clock.advance(1);
  assert.deepEqual(sent, [true, true, false]);
  clock.advance(10_000);
  assert.deepEqual(sent, [true, true, false], "nothing more while idle");
});

test("typing: stop() sends false once, and only after a true went out", () => {
  const clock = fakeClock();
  const sent = [];
  let open = false;
  const sender = createTypingSender({ send: (v) => open && sent.push(v) > 0, timers: clock.timers, now: clock.now });
  sender.input(); // socket down: nothing went out
  sender.stop();
  assert.deepEqual(sent, []);
  open = true;
  sender.input();
  assert.equal(sender.isTyping(), true);
  sender.stop();
  sender.stop();
  assert.deepEqual(sent, [true, false]);
  clock.advance(5000);
  assert.deepEqual(sent, [true, false], "the idle timer was cleared");
});

test("typing indicator: shows who types, hides on false or after 6 s without news", () => {
  const clock = fakeClock();
  const element = { textContent: "", hidden: false };
  const indicator = createTypingIndicator({ element, timers: clock.timers });
  assert.equal(element.hidden, true);
  indicator.update("alice", true);
  assert.equal(element.hidden, false);
  assert.equal(element.textContent, "alice is typing…");
  indicator.update("alice", false);
  assert.equal(element.hidden, true);
  indicator.update("alice", true);
  clock.advance(5000);
  indicator.update("alice", true); // news: the 6 s start again
  clock.advance(5000);
  assert.equal(element.hidden, false);
  clock.advance(1000);
  assert.equal(element.hidden, true, "a lost `false` does not leave it up");
  indicator.update("alice", true);
  indicator.clear();
  assert.equal(element.hidden, true);
  assert.equal(clock.delays().length, 0);
});

test("typing text for one, two and three people", () => {
  assert.equal(typingText([]), "");
  assert.equal(typingText(["alice"]), "alice is typing…");
  assert.equal(typingText(["alice", "bob"]), "alice and bob are typing…");
  assert.equal(typingText(["a", "b", "c"]), "a, b and c are typing…");
});
