// Reads one answer's SSE stream over fetch and keeps it going: remembers the last event id,
// reconnects with backoff to GET /api/messages/<id>/stream/ (Last-Event-ID), honours `retry:`,
// stops on `done`, and aborts through an AbortSignal. Modelled on Azure/fetch-event-source;
// the parsing itself is sse.js.

import { createByteFeeder, createParser } from "./sse.js";
import { ApiError, errorFromResponse, requestHeaders, streamUrl } from "./api.js";

export class ConnectionLost extends Error {
  constructor(message = "The connection was lost.") {
    super(message);
    this.name = "ConnectionLost";
  }
}

const DEFAULTS = {
  retryMs: 1000, // until the server says otherwise with `retry:`
  maxRetryMs: 15000,
  maxAttempts: 8, // consecutive failed reconnects before giving up
  idleMs: 45000, // no byte for this long (server pings every 15 s): treat as lost
};

/**
 * Follow an answer until its `done` event.
 *
 * request:     {url, method, body} for the first connection; omit it to attach with
 *              GET /api/messages/<messageId>/stream/ from `lastEventId`.
 * onEvent:     called with {type, id, data} for each new event (data parsed from JSON).
 * onReconnect: called with {attempt, delayMs} before each reconnect.
 * Resolves with {messageId, lastEventId} after `done`; rejects with ApiError (the server said
 * no), ConnectionLost (gave up reconnecting) or the abort reason.
 */
export async function followStream({
  request,
  messageId = null,
  lastEventId = 0,
  signal,
  onEvent,
  onReconnect = () => {},
  fetchImpl = (...args) => fetch(...args),
  sleep = sleepFor,
  options = {},
}) {
  const opts = { ...DEFAULTS, ...options };
  const state = { messageId, lastEventId, retryMs: opts.retryMs, done: false };
  let next = request || null;
  let attempt = 0;

  for (;;) {
    signal?.throwIfAborted();
    const init = next || resumeRequest(state);
    let gotEvents = false;
    try {
      gotEvents = await readOnce({ fetchImpl, init, state, signal, onEvent, idleMs: opts.idleMs });
    } catch (error) {
      if (signal?.aborted) throw signal.reason ?? error;
      if (!isRetryable(error, init)) throw error;
    }
    if (state.done) return { messageId: state.messageId, lastEventId: state.lastEventId };
    if (state.messageId == null) {
      // The POST broke before `start`: there is nothing to re-attach to.
      throw new ConnectionLost("The connection was lost before the answer started.");
    }
    attempt = gotEvents ? 1 : attempt + 1;
    if (attempt > opts.maxAttempts) throw new ConnectionLost();
    const delayMs = backoffDelay(state.retryMs, attempt, opts.maxRetryMs);
    onReconnect({ attempt, delayMs });
    await sleep(delayMs, signal);
    next = null;
  }
}

/** One connection: fetch, check, read the body to its end. Returns whether new events came. */
async function readOnce({ fetchImpl, init, state, signal, onEvent, idleMs }) {
  const attempt = new AbortController();
  const abortAttempt = () => attempt.abort(signal.reason);
  signal?.addEventListener("abort", abortAttempt, { once: true });
  let idleTimer = null;
  const touch = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => attempt.abort(new ConnectionLost("The stream went silent.")), idleMs);
  };
  let gotEvents = false;
  const parser = createParser({
    onEvent: (raw) => {
      const event = decodeEvent(raw);
      if (!event || !acceptEvent(state, event)) return;
      gotEvents = true;
      onEvent(event);
    },
    onRetry: (ms) => {
      state.retryMs = ms;
    },
  });
  const feeder = createByteFeeder(parser);
  try {
    touch();
    const response = await fetchImpl(init.url, { ...init.fetchInit, signal: attempt.signal });
    await checkResponse(response);
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      touch();
      feeder.push(value);
      if (state.done) {
        reader.cancel().catch(() => {});
        break;
      }
    }
    feeder.end();
    return gotEvents;
  } finally {
    clearTimeout(idleTimer);
    signal?.removeEventListener("abort", abortAttempt);
  }
}

/** Parse an SSE event's JSON data; remember ids, the message id and `done`. */
function decodeEvent(raw) {
  let data;
  try {
    data = raw.data ? JSON.parse(raw.data) : {};
  } catch {
    return null; // a malformed event is dropped rather than breaking the answer
  }
  const id = raw.id === undefined || raw.id === "" ? null : Number(raw.id);
  return { type: raw.event, id, data };
}

/** Drop anything at or before the last event id we have: a replay never doubles text. */
function acceptEvent(state, event) {
  if (event.id != null && Number.isFinite(event.id)) {
    if (event.id <= state.lastEventId) return false;
    state.lastEventId = event.id;
  }
  if (event.type === "start" && event.data.message_id != null) state.messageId = event.data.message_id;
  if (event.type === "done") state.done = true;
  return true;
}

async function checkResponse(response) {
  if (!response.ok) throw await errorFromResponse(response);
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("text/event-stream")) {
    // e.g. a login page after the session expired (fetch followed the 302).
    throw new ApiError(response.status, "bad_response", "The server did not answer with a stream.");
  }
}

function resumeRequest(state) {
  return {
    url: streamUrl(state.messageId, state.lastEventId),
    fetchInit: {
      method: "GET",
      credentials: "same-origin",
      headers: requestHeaders("GET", {
        Accept: "text/event-stream",
        "Last-Event-ID": String(state.lastEventId),
      }),
      cache: "no-store",
    },
  };
}

/** Build the first request of an answer: POST the user's message. */
export function postRequest(url, content, extra = {}) {
  return {
    url,
    fetchInit: {
      method: "POST",
      credentials: "same-origin",
      headers: requestHeaders("POST", {
        Accept: "text/event-stream",
        "Content-Type": "application/json",
      }),
      body: JSON.stringify({ content, ...extra }),
      cache: "no-store",
    },
  };
}

/** Network trouble and 5xx/429 are worth another try; other HTTP answers are final. */
function isRetryable(error, init) {
  if (error instanceof ApiError) {
    const transient = error.status >= 500 || error.status === 429 || error.status === 408;
    // A POST that failed with 5xx may or may not have created the message: don't resend it.
    return transient && init.fetchInit.method === "GET";
  }
  return true; // TypeError from fetch, a reset stream, the idle watchdog
}

/** Exponential backoff from the server's retry interval, with jitter, capped. */
export function backoffDelay(retryMs, attempt, maxMs = DEFAULTS.maxRetryMs) {
  const base = Math.min(maxMs, retryMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

function sleepFor(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
