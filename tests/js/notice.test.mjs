// The composer notice for refused messages (static/chat/js/notice.js) and how a refused post's
// JSON error becomes an ApiError with its wait (static/chat/js/api.js), in isolation.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createComposerNotice, READY_AGAIN, refusalText } from "../../static/chat/js/notice.js";
import { ApiError, errorFromResponse, retryAfterSeconds } from "../../static/chat/js/api.js";

/** A refused post as the server sends it: JSON error body and a Retry-After header. */
function refusal(status, code, message, retryAfter) {
  const error = { code, message, ...(retryAfter == null ? {} : { retry_after: retryAfter }) };
  const headers = { "Content-Type": "application/json", ...(retryAfter == null ? {} : { "Retry-After": String(retryAfter) }) };
  return new Response(JSON.stringify({ error }), { status, headers });
}

/** A stand-in for the notice's <p>: the notice only sets text and a data attribute. */
function fakeElement() {
  return { textContent: "", dataset: {} };
}

/** Timers run by hand: fire() runs what is due. */
function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    setTimer: (fn, ms) => (pending.set(next, { fn, ms }), next++),
    clearTimer: (id) => pending.delete(id),
    fire() {
      for (const [id, { fn }] of [...pending]) {
        pending.delete(id);
        fn();
      }
    },
    delays: () => [...pending.values()].map((t) => t.ms),
  };
}

test("each refusal reads as plain words, with the wait in seconds where there is one", async () => {
  const cases = [
    [429, "too_many_answers", "You have 2 answers streaming already; wait for one to finish.", 5,
      "You have 2 answers streaming already; wait for one to finish."],
    [429, "too_many_answers", "You have 1 answers streaming already; wait for one to finish.", 5,
      "You have an answer streaming already; wait for it to finish."],
    [429, "rate_limited", "You are sending messages too fast (at most 20 a minute).", 40,
      "You're sending messages too fast; try again in 40 s."],
    [503, "server_busy", "The server is answering as many questions as it can.", 5, "The server is busy; try again in 5 s."],
    [503, "draining", "This server is restarting.", 5, "The server is restarting; try again in 5 s."],
    [503, "unavailable", "The server cannot reach Redis.", 5, "The server can't take messages right now; try again in 5 s."],
    [409, "answer_in_progress", "An answer is still streaming.", null,
      "An answer is still being written in this conversation; wait for it or stop it."],
    [413, "content_too_long", "content is longer than 32000 characters.", null,
      "Your message is too long to send; shorten it and try again."],
    [413, "body_too_large", "The request body is too large.", null, "Your message is too long to send; shorten it and try again."],
    [503, "", "", 7, "The server can't take your message now; try again in 7 s."],
  ];
  for (const [status, code, message, wait, expected] of cases) {
    const error = await errorFromResponse(refusal(status, code, message, wait));
    assert.ok(error instanceof ApiError);
    assert.equal(error.retryAfter, wait);
    assert.equal(refusalText(error).text, expected, code);
  }
});

test("the wait comes from the body, else from the Retry-After header", async () => {
  assert.equal(retryAfterSeconds(12, "99"), 12);
  assert.equal(retryAfterSeconds(null, "30"), 30);
  assert.equal(retryAfterSeconds(undefined, null), null);
  assert.ok(retryAfterSeconds(null, new Date(Date.now() + 20_000).toUTCString()) >= 19);
  const headerOnly = new Response("busy", { status: 503, headers: { "Retry-After": "8" } });
  const error = await errorFromResponse(headerOnly);
  assert.equal(error.retryAfter, 8);
  assert.equal(refusalText(error).text, "The server can't take your message now; try again in 8 s.");
});

test("a wait is stated once, then the notice says the message can go", () => {
  const element = fakeElement();
  const timers = fakeTimers();
  const notice = createComposerNotice({ element, ...timers });
  notice.show(new ApiError(429, "rate_limited", "too fast", 40));
  assert.equal(element.textContent, "You're sending messages too fast; try again in 40 s.");
  assert.deepEqual(timers.delays(), [40_000]);
  timers.fire();
  assert.equal(element.textContent, READY_AGAIN);
});

test("a new refusal replaces the last one, and an accepted message clears it", () => {
  const element = fakeElement();
  const timers = fakeTimers();
  const notice = createComposerNotice({ element, ...timers });
  notice.show(new ApiError(503, "server_busy", "busy", 5));
  notice.show(new ApiError(429, "too_many_answers", "You have 2 answers streaming already", 5));
  assert.equal(element.textContent, "You have 2 answers streaming already; wait for one to finish.");
  assert.equal(element.dataset.code, "too_many_answers");
  assert.deepEqual(timers.delays(), []); // the busy server's timer is gone; this one waits for an answer, not a clock
  notice.clear();
  assert.equal(element.textContent, "");
  timers.fire();
  assert.equal(element.textContent, "");
});
