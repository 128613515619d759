// "Typing" both ways over the conversation's socket: what this page tells the others while the
// user types, and the quiet indicator for what the others tell us. Timers are injectable so the
// logic is unit-tested in Node.

export const TYPING_DEFAULTS = {
  throttleMs: 1000, // "still typing" at most this often (the server throttles the same way)
  idleMs: 3000, // no keystroke for this long: no longer typing
  staleMs: 6000, // an indicator with no news for this long goes away (a lost "false")
};

/**
 * The sending side. input() on each edit sends `typing: true` (again at most once per
 * throttleMs, which keeps the others' indicator alive) and arms the idle timer; stop() (send,
 * blur, switching conversation, idle) sends `typing: false` if we had said true.
 * send(typing) returns whether the frame went out (false while the socket is down).
 */
export function createTypingSender({ send, timers = globalThis, now = () => Date.now(), options = {} }) {
  const opts = { ...TYPING_DEFAULTS, ...options };
  let typing = false; // what the others were last told
  let sentAt = -Infinity;
  let idle = null;

  function input() {
    const t = now();
    if ((!typing || t - sentAt >= opts.throttleMs) && send(true)) {
      typing = true;
      sentAt = t;
    }
    if (idle !== null) timers.clearTimeout(idle);
    idle = timers.setTimeout(stop, opts.idleMs);
  }

  function stop() {
    if (idle !== null) timers.clearTimeout(idle);
    idle = null;
    if (!typing) return;
    typing = false;
    send(false); // if the socket is down the server already said so when it lost us
  }

  return { input, stop, isTyping: () => typing };
}

/**
 * The receiving side: `element` shows "alice is typing…" while any other connection types, and
 * is hidden otherwise. update(user, typing) per frame; a user with no news for staleMs is dropped.
 */
export function createTypingIndicator({ element, timers = globalThis, options = {} }) {
  const opts = { ...TYPING_DEFAULTS, ...options };
  const typists = new Map(); // user -> stale timer

  function update(user, typing) {
    if (typists.has(user)) timers.clearTimeout(typists.get(user));
    if (typing) typists.set(user, timers.setTimeout(() => update(user, false), opts.staleMs));
    else typists.delete(user);
    render();
  }

  function clear() {
    for (const timer of typists.values()) timers.clearTimeout(timer);
    typists.clear();
    render();
  }

  function render() {
    const text = typingText([...typists.keys()]);
    if (element.textContent !== text) element.textContent = text;
    element.hidden = !text;
  }

  render();
  return { update, clear };
}

/** "alice is typing…", "alice and bob are typing…", "" for nobody. */
export function typingText(users) {
  if (users.length === 0) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  return `${users.slice(0, -1).join(", ")} and ${users[users.length - 1]} are typing…`;
}
