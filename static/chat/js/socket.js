// The conversation's WebSocket (PROTOCOL.md, "WebSocket"): one per shown conversation. It carries
// Stop (`cancel`), typing, and answer state frames. It is a convenience, never a dependency: every
// use has an HTTP path for when it is down (Stop falls back to POST .../cancel/, answers stream
// over SSE either way), so it reconnects quietly with backoff and nothing waits for it.
//
//   const socket = createConversationSocket({conversationId, onGeneration, onTyping, onError, onStatus});
//   socket.send({type: "typing", typing: true})  -> true if it went out, false when not open
//   socket.isOpen()
//   socket.close()                                 for good: no reconnect after this

const GENERATION_STATES = new Set(["started", "finished", "cancelled", "error", "interrupted"]);

export const SOCKET_DEFAULTS = {
  baseMs: 500, // first reconnect delay, doubled per failed attempt
  maxMs: 15000, // cap
  stableMs: 5000, // a connection open this long resets the backoff when it drops
};

const OPEN = 1;

/** ws: or wss: (as the page) URL of a conversation's socket. */
export function socketUrl(conversationId, loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws/conversations/${encodeURIComponent(conversationId)}/`;
}

/**
 * The wait before reconnect attempt `attempt` (1, 2, ...): baseMs doubled per attempt, capped at
 * maxMs, with "equal jitter" (between half and all of it) so that many pages dropped together
 * (a server restart) do not all come back in the same instant. Never above maxMs.
 */
export function reconnectDelay(attempt, { baseMs = SOCKET_DEFAULTS.baseMs, maxMs = SOCKET_DEFAULTS.maxMs, random = Math.random } = {}) {
  const base = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base / 2 + (random() * base) / 2);
}

/**
 * A server frame from its text, checked against the protocol; null for anything else (not JSON,
 * a wrong shape, an unknown type: the protocol may grow, and a bad frame must not break the page).
 */
export function parseServerFrame(text) {
  if (typeof text !== "string") return null;
  let frame;
  try {
    frame = JSON.parse(text);
  } catch {
    return null;
  }
  if (!frame || typeof frame !== "object" || Array.isArray(frame)) return null;
  switch (frame.type) {
    case "generation":
      if (!Number.isInteger(frame.message_id) || !GENERATION_STATES.has(frame.state)) return null;
      return { type: "generation", message_id: frame.message_id, state: frame.state };
    case "typing":
      if (typeof frame.user !== "string" || typeof frame.typing !== "boolean") return null;
      return { type: "typing", user: frame.user, typing: frame.typing };
    case "error":
      return {
        type: "error",
        code: typeof frame.code === "string" ? frame.code : "error",
        message: typeof frame.message === "string" ? frame.message : "",
      };
    default:
      return null;
  }
}

/**
 * Open the socket of one conversation and keep it open until close().
 *
 * onGeneration({message_id, state}), onTyping({user, typing}), onError({code, message}): server
 * frames, already checked. onStatus({state, attempt, delayMs, reconnected}) with state "open"
 * (reconnected: an earlier connection had opened, so frames may have been missed meanwhile),
 * "reconnecting" (delayMs until the next try) or "refused". Callbacks run from socket events and
 * timers, except "reconnecting" when the WebSocket constructor itself throws.
 *
 * A refused handshake (not logged in, not our conversation) looks to the browser like any other
 * failed connection (close 1006 before open), so it is retried like one, at a growing interval up
 * to maxMs: never a tight loop. A close code 4400-4499 from the server is final (no reconnect).
 * WebSocketImpl, url, timers, now and random are injectable for tests.
 */
export function createConversationSocket({
  conversationId,
  onGeneration = () => {},
  onTyping = () => {},
  onError = () => {},
  onStatus = () => {},
  WebSocketImpl = globalThis.WebSocket,
  url = socketUrl(conversationId),
  timers = globalThis,
  now = () => Date.now(),
  random = Math.random,
  options = {},
}) {
  const opts = { ...SOCKET_DEFAULTS, ...options };
  let ws = null;
  let closed = false;
  let attempt = 0; // failed connections in a row
  let timer = null;
  let openedAt = null; // when the current connection opened
  let everOpened = false;

  function connect() {
    timer = null;
    if (closed) return;
    let socket;
    try {
      socket = new WebSocketImpl(url);
    } catch {
      attempt += 1;
      scheduleReconnect();
      return;
    }
    ws = socket;
    socket.onopen = () => {
      if (ws !== socket) return;
      openedAt = now();
      const reconnected = everOpened;
      everOpened = true;
      onStatus({ state: "open", attempt, reconnected });
    };
    socket.onmessage = (event) => {
      if (ws !== socket) return;
      dispatch(parseServerFrame(event.data));
    };
    socket.onerror = () => {}; // a close event always follows; that is where we act
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      const stable = openedAt !== null && now() - openedAt >= opts.stableMs;
      openedAt = null;
      if (closed) return;
      if (event && event.code >= 4400 && event.code <= 4499) {
        closed = true;
        onStatus({ state: "refused", code: event.code });
        return;
      }
      attempt = stable ? 1 : attempt + 1;
      scheduleReconnect();
    };
  }

  function dispatch(frame) {
    if (!frame) return;
    if (frame.type === "generation") onGeneration(frame);
    else if (frame.type === "typing") onTyping(frame);
    else if (frame.type === "error") onError(frame);
  }

  function scheduleReconnect() {
    const delayMs = reconnectDelay(attempt, { ...opts, random });
    onStatus({ state: "reconnecting", attempt, delayMs });
    timer = timers.setTimeout(connect, delayMs);
  }

  function isOpen() {
    return ws !== null && ws.readyState === OPEN;
  }

  function send(frame) {
    if (!isOpen()) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false; // closing under us: the caller takes its HTTP path
    }
  }

  function close() {
    closed = true;
    if (timer !== null) timers.clearTimeout(timer);
    timer = null;
    const socket = ws;
    ws = null;
    if (socket) {
      try {
        socket.close(1000);
      } catch {
        // already closing
      }
    }
  }

  connect();
  return { send, close, isOpen, conversationId };
}
