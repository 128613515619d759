// Unit tests for the browser SSE parser (static/chat/js/sse.js). Run: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";
import { createByteFeeder, createParser } from "../../static/chat/js/sse.js";

function collect() {
  const out = { events: [], retries: [], comments: [] };
  const parser = createParser({
    onEvent: (e) => out.events.push(e),
    onRetry: (ms) => out.retries.push(ms),
    onComment: (c) => out.comments.push(c),
  });
  return { parser, out };
}

function feedAll(chunks) {
  const { parser, out } = collect();
  for (const chunk of chunks) parser.feed(chunk);
  return out;
}

/** Every way of cutting `text` into two chunks gives the same result as one chunk. */
function assertSplitInvariant(text) {
  const whole = feedAll([text]);
  for (let i = 1; i < text.length; i += 1) {
    assert.deepEqual(feedAll([text.slice(0, i), text.slice(i)]), whole, `split at ${i}`);
  }
  return whole;
}

const STREAM =
  "retry: 3000\n\n" +
  'id: 1\nevent: start\ndata: {"message_id": 7}\n\n' +
  ": ping\n\n" +
  'id: 2\nevent: token\ndata: {"text": "Hel"}\n\n' +
  'id: 3\nevent: token\ndata: {"text": "lo"}\n\n' +
  'id: 4\nevent: done\ndata: {"status": "complete"}\n\n';

test("parses a whole stream: events, retry and comments", () => {
  const out = feedAll([STREAM]);
  assert.deepEqual(out.retries, [3000]);
  assert.deepEqual(out.comments, ["ping"]);
  assert.deepEqual(
    out.events.map((e) => [e.id, e.event, JSON.parse(e.data)]),
    [
      ["1", "start", { message_id: 7 }],
      ["2", "token", { text: "Hel" }],
      ["3", "token", { text: "lo" }],
      ["4", "done", { status: "complete" }],
    ],
  );
});

test("same result whatever the chunk boundaries (every two-way split)", () => {
  assertSplitInvariant(STREAM);
});

test("same result fed one character at a time", () => {
  assert.deepEqual(feedAll([...STREAM]), feedAll([STREAM]));
});

test("accepts CRLF, CR and LF line endings, mixed", () => {
  const out = feedAll(["id: 1\r\ndata: a\r\n\r\nid: 2\rdata: b\r\rid: 3\ndata: c\n\n"]);
  assert.deepEqual(out.events.map((e) => [e.id, e.data]), [["1", "a"], ["2", "b"], ["3", "c"]]);
});

test("a CRLF split across chunks is one line ending, not two", () => {
  const out = feedAll(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a\nb"]);
  assertSplitInvariant("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n");
});

test("a lone CR at the end of a chunk ends the line at once", () => {
  const { parser, out } = collect();
  parser.feed("data: x\r\r");
  assert.deepEqual(out.events.map((e) => e.data), ["x"]);
  parser.feed("data: y\n\n"); // no leading LF to skip here
  assert.deepEqual(out.events.map((e) => e.data), ["x", "y"]);
});

test("joins multi-line data with newlines", () => {
  const out = feedAll(["data: line one\ndata: line two\ndata:\ndata:  indented\n\n"]);
  assert.equal(out.events[0].data, "line one\nline two\n\n indented");
});

test("strips exactly one space after the colon", () => {
  const out = feedAll(["data:no-space\n\n", "data:  two\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["no-space", " two"]);
});

test("partial lines wait for their terminator", () => {
  const { parser, out } = collect();
  parser.feed('id: 5\nevent: tok');
  parser.feed('en\ndata: {"te');
  assert.equal(out.events.length, 0);
  parser.feed('xt": "x"}\n');
  assert.equal(out.events.length, 0, "no dispatch before the blank line");
  parser.feed("\n");
  assert.deepEqual(out.events, [{ id: "5", event: "token", data: '{"text": "x"}' }]);
});

test("an event without data is not dispatched; its type does not leak", () => {
  const out = feedAll(["event: token\nid: 9\n\ndata: plain\n\n"]);
  assert.deepEqual(out.events, [{ id: undefined, event: "message", data: "plain" }]);
});

test("an empty data line still dispatches an event with empty data", () => {
  const out = feedAll(["data:\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), [""]);
});

test("retry only when all digits", () => {
  const out = feedAll(["retry: 1500\n", "retry: 12a\n", "retry: -5\n", "retry: 2.5\n", "retry:\n", "retry: 0\n\n"]);
  assert.deepEqual(out.retries, [1500, 0]);
});

test("comments: with and without a space, never events", () => {
  const out = feedAll([":ping\n: keep alive\n:\n\n"]);
  assert.deepEqual(out.comments, ["ping", "keep alive", ""]);
  assert.equal(out.events.length, 0);
});

test("unknown fields and a field without colon are ignored", () => {
  const out = feedAll(["foo: bar\ndata\nbaz\ndata: x\n\n"]);
  // "data" without a colon is a data field with an empty value.
  assert.deepEqual(out.events.map((e) => e.data), ["\nx"]);
});

test("an id containing NUL is ignored", () => {
  const out = feedAll(["id: 1\0 2\ndata: x\n\n"]);
  assert.equal(out.events[0].id, undefined);
});

test("a leading BOM is dropped", () => {
  const out = feedAll(["\uFEFFdata: x\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["x"]);
});

test("an unterminated last event is not dispatched", () => {
  const out = feedAll(["data: done\n\ndata: half"]);
  assert.deepEqual(out.events.map((e) => e.data), ["done"]);
});

test("reset() forgets a partial line and event", () => {
  const { parser, out } = collect();
  parser.feed("data: stale\ndata: part");
  parser.reset();
  parser.feed("data: fresh\n\n");
  assert.deepEqual(out.events.map((e) => e.data), ["fresh"]);
});

test("reset({consume: true}) processes the unterminated line first", () => {
  const { parser, out } = collect();
  parser.feed("retry: 700");
  parser.reset({ consume: true });
  assert.deepEqual(out.retries, [700]);
});

test("a multi-byte character split across byte chunks survives (TextDecoder stream)", () => {
  const { parser, out } = collect();
  const feeder = createByteFeeder(parser);
  const bytes = new TextEncoder().encode('id: 1\ndata: {"text": "héllo 😀 世界"}\n\n');
  // cut inside the 4-byte emoji and inside the 3-byte CJK character and the 2-byte é
  const emoji = bytes.indexOf(0xf0);
  const cuts = [bytes.indexOf(0xc3) + 1, emoji + 1, emoji + 3, bytes.indexOf(0xe4) + 2, bytes.length];
  let start = 0;
  for (const end of cuts) {
    feeder.push(bytes.slice(start, end));
    start = end;
  }
  feeder.end();
  assert.equal(JSON.parse(out.events[0].data).text, "héllo 😀 世界");
});

test("bytes fed one at a time decode exactly", () => {
  const { parser, out } = collect();
  const feeder = createByteFeeder(parser);
  const text = "data: ünïcödé ✓ 🚀\r\n\r\n";
  for (const b of new TextEncoder().encode(text)) feeder.push(new Uint8Array([b]));
  feeder.end();
  assert.deepEqual(out.events.map((e) => e.data), ["ünïcödé ✓ 🚀"]);
});

test("a CRLF split across byte chunks is one line ending", () => {
  const { parser, out } = collect();
  const feeder = createByteFeeder(parser);
  const enc = new TextEncoder();
  feeder.push(enc.encode("data: a\r"));
  feeder.push(enc.encode("\ndata: b\r"));
  feeder.push(enc.encode("\n\r"));
  feeder.push(enc.encode("\n"));
  assert.deepEqual(out.events.map((e) => e.data), ["a\nb"]);
});
