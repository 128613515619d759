// Unit tests for the reconnecting stream reader (static/chat/js/stream.js) with a fake fetch.
import { test } from "node:test";
import assert from "node:assert/strict";

// stream.js imports api.js, which reads document.cookie for the CSRF token.
globalThis.document ??= { cookie: "csrftoken=tok", querySelector: () => null };

const { ConnectionLost, backoffDelay, followStream, postRequest } = await import("../../static/chat/js/stream.js");
const { ApiError } = await import("../../static/chat/js/api.js");

const enc = new TextEncoder();

function sse(id, event, data) {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A Response whose body yields these chunks, then ends (or errors, like a dropped connection). */
function streamResponse(chunks, { fail = false, status = 200, type = "text/event-stream" } = {}) {
  const queue = [...chunks];
  const body = new ReadableStream({
    // One chunk per read; erroring only after the last was read (an error drops queued chunks).
    pull(controller) {
      if (queue.length) controller.enqueue(enc.encode(queue.shift()));
      else if (fail) controller.error(new TypeError("network error"));
      else controller.close();
    },
  });
  return new Response(body, { status, headers: { "Content-Type": type } });
}

function fakeFetch(responses) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const next = responses.shift();
    if (!next) throw new Error("no more responses");
    if (next instanceof Error) throw next;
    return typeof next === "function" ? next(url, init) : next;
  };
  return { fn, calls };
}

const noSleep = async () => {};

test("reads one stream to `done` and reports events in order", async () => {
  const { fn, calls } = fakeFetch([
    streamResponse([
      "retry: 500\n\n",
      sse(1, "start", { message_id: 9 }),
      sse(2, "token", { text: "Hel" }),
      sse(3, "token", { text: "lo" }),
      sse(4, "done", { status: "complete" }),
    ]),
  ]);
  const events = [];
  const result = await followStream({
    request: postRequest("/api/conversations/1/messages/", "hi"),
    onEvent: (e) => events.push(e),
    fetchImpl: fn,
    sleep: noSleep,
  });
  assert.deepEqual(result, { messageId: 9, lastEventId: 4 });
  assert.deepEqual(events.map((e) => [e.id, e.type]), [[1, "start"], [2, "token"], [3, "token"], [4, "done"]]);
  assert.equal(calls[0].init.method, "POST");
  assert.equal(calls[0].init.headers["X-CSRFToken"], "tok");
  assert.equal(calls[0].init.body, JSON.stringify({ content: "hi" }));
});

test("a dropped connection resumes from the last event id, honouring retry:", async () => {
  const delays = [];
  const { fn, calls } = fakeFetch([
    streamResponse(["retry: 250\n\n", sse(1, "start", { message_id: 9 }), sse(2, "token", { text: "a" })], { fail: true }),
    streamResponse([sse(3, "token", { text: "b" }), sse(4, "done", { status: "complete" })]),
  ]);
  const text = [];
  await followStream({
    request: postRequest("/post", "x"),
    onEvent: (e) => e.type === "token" && text.push(e.data.text),
    fetchImpl: fn,
    sleep: async (ms) => delays.push(ms),
  });
  assert.equal(text.join(""), "ab");
  assert.equal(calls[1].url, "/api/messages/9/stream/?last_event_id=2");
  assert.equal(calls[1].init.method, "GET");
  assert.equal(calls[1].init.headers["Last-Event-ID"], "2");
  assert.ok(delays[0] >= 250 * 0.75 && delays[0] <= 250 * 1.25, `delay ${delays[0]} from retry: 250`);
});

test("a body that ends without `done` also reconnects", async () => {
  const { fn, calls } = fakeFetch([
    streamResponse([sse(1, "start", { message_id: 3 }), sse(2, "token", { text: "a" })]),
    streamResponse([sse(3, "done", { status: "complete" })]),
  ]);
  await followStream({ messageId: 3, onEvent: () => {}, fetchImpl: fn, sleep: noSleep });
  assert.equal(calls.length, 2);
  assert.equal(calls[0].url, "/api/messages/3/stream/?last_event_id=0");
});

test("replayed events at or before the last id are dropped: no doubled text", async () => {
  const { fn } = fakeFetch([
    streamResponse([sse(1, "start", { message_id: 5 }), sse(2, "token", { text: "a" })], { fail: true }),
    // a server that replays too much
    streamResponse([sse(1, "start", { message_id: 5 }), sse(2, "token", { text: "a" }), sse(3, "token", { text: "b" }), sse(4, "done", {})]),
  ]);
  const text = [];
  await followStream({ request: postRequest("/p", "x"), onEvent: (e) => e.type === "token" && text.push(e.data.text), fetchImpl: fn, sleep: noSleep });
  assert.equal(text.join(""), "ab");
});

test("backoff grows while reconnects fail, then gives up with ConnectionLost", async () => {
  const delays = [];
  const { fn } = fakeFetch([
    streamResponse([sse(1, "start", { message_id: 5 })], { fail: true }),
    new TypeError("offline"),
    new TypeError("offline"),
    new TypeError("offline"),
  ]);
  await assert.rejects(
    followStream({
      request: postRequest("/p", "x"),
      onEvent: () => {},
      fetchImpl: fn,
      sleep: async (ms) => delays.push(ms),
      options: { retryMs: 100, maxAttempts: 3 },
    }),
    ConnectionLost,
  );
  assert.equal(delays.length, 3);
  assert.ok(delays[0] <= 125 && delays[1] >= 150 && delays[2] >= 300, `delays ${delays}`);
});

test("an HTTP error answer is final, with the server's code and message", async () => {
  const { fn, calls } = fakeFetch([
    new Response(JSON.stringify({ error: { code: "content_too_long", message: "Too long." } }), {
      status: 400,
      headers: { "Content-Type": "application/json" },
    }),
  ]);
  await assert.rejects(
    followStream({ request: postRequest("/p", "x"), onEvent: () => {}, fetchImpl: fn, sleep: noSleep }),
    (error) => error instanceof ApiError && error.status === 400 && error.code === "content_too_long" && error.message === "Too long.",
  );
  assert.equal(calls.length, 1);
});

test("a POST that breaks before `start` is not resent", async () => {
  const { fn, calls } = fakeFetch([new TypeError("offline")]);
  await assert.rejects(
    followStream({ request: postRequest("/p", "x"), onEvent: () => {}, fetchImpl: fn, sleep: noSleep }),
    ConnectionLost,
  );
  assert.equal(calls.length, 1);
});

test("a non-stream answer (e.g. the login page) is an error, not a stream", async () => {
  const { fn } = fakeFetch([streamResponse(["<html>"], { type: "text/html" })]);
  await assert.rejects(
    followStream({ request: postRequest("/p", "x"), onEvent: () => {}, fetchImpl: fn, sleep: noSleep }),
    (error) => error instanceof ApiError && error.code === "bad_response",
  );
});

test("aborting stops at once with the abort reason", async () => {
  const controller = new AbortController();
  const { fn } = fakeFetch([
    (_url, init) =>
      new Promise((_resolve, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason))),
  ]);
  const pending = followStream({ request: postRequest("/p", "x"), signal: controller.signal, onEvent: () => {}, fetchImpl: fn, sleep: noSleep });
  controller.abort(new Error("stopped"));
  await assert.rejects(pending, /stopped/);
});

test("a silent connection is treated as lost (idle watchdog)", async () => {
  const { fn, calls } = fakeFetch([
    (_url, init) => {
      const body = new ReadableStream({
        start(controller) {
          controller.enqueue(enc.encode(sse(1, "start", { message_id: 2 })));
          init.signal.addEventListener("abort", () => controller.error(init.signal.reason));
        },
      });
      return new Response(body, { headers: { "Content-Type": "text/event-stream" } });
    },
    streamResponse([sse(2, "done", {})]),
  ]);
  await followStream({
    request: postRequest("/p", "x"),
    onEvent: () => {},
    fetchImpl: fn,
    sleep: noSleep,
    options: { idleMs: 30 },
  });
  assert.equal(calls.length, 2);
  assert.match(calls[1].url, /last_event_id=1$/);
});

test("backoffDelay is capped", () => {
  for (let i = 0; i < 50; i += 1) assert.ok(backoffDelay(1000, 20, 15000) <= 15000 * 1.25);
});
