// Frame batching for streamed text: tokens land in a buffer at network speed, the DOM changes at
// most once per animation frame. rAF does not fire in a hidden tab, so while hidden nothing is
// scheduled and the page catches up in one commit on `visibilitychange`. On displays faster than
// 60 Hz (and headless Chromium's ~60.7 Hz) a frame is skipped now and then: at most 60 commits/s.
// Slots are 1/59 s, not 1/60 s: a window that opens on a commit one frame late would otherwise
// count a hair over 60/s. On a 60 Hz screen that skips about one frame a second, which no one
// reading streamed text can see.

const MIN_COMMIT_INTERVAL_MS = 1000 / 59;

/** Counters the benchmark and the browser tests read (window.__chatStats). */
export const chatStats = (globalThis.__chatStats ||= {
  commits: 0, frameCommits: 0, tokens: 0, lastCommitAt: 0, lastFrameCommitAt: 0, lastCommitMs: 0,
  commitMsTotal: 0, commitMsMax: 0, // main-thread time spent in commits, summed and the longest
});

/**
 * createFrameBatcher(commit) -> {request, flush, dispose}
 * request(): the buffer changed; commit() runs on the next frame (once, however many requests).
 * flush():   commit now if anything is pending (end of stream, tab became visible).
 */
export function createFrameBatcher(commit, { win = globalThis, doc = globalThis.document } = {}) {
  let frame = null;
  let dirty = false;
  let nextSlot = 0; // earliest frame time for the next commit: one slot per 1/60 s

  function request() {
    dirty = true;
    if (frame !== null || doc.hidden) return;
    frame = win.requestAnimationFrame(onFrame);
  }

  function onFrame(now) {
    frame = null;
    if (now < nextSlot) {
      frame = win.requestAnimationFrame(onFrame); // too soon for the 60/s budget: next frame
      return;
    }
    // Slots advance by a fixed interval (so the long-run rate is <= 60/s) but never lag more than
    // one interval behind the clock (so an idle spell doesn't bank a burst of commits).
    nextSlot = Math.max(nextSlot, now - MIN_COMMIT_INTERVAL_MS) + MIN_COMMIT_INTERVAL_MS;
    if (dirty) {
      // Frame commits are counted in frame time, the clock the 60/s budget is kept in.
      chatStats.frameCommits += 1;
      chatStats.lastFrameCommitAt = now;
    }
    flush();
  }

  function flush() {
    if (!dirty) return;
    dirty = false;
    const started = performance.now();
    commit();
    chatStats.commits += 1;
    chatStats.lastCommitAt = performance.now();
    chatStats.lastCommitMs = chatStats.lastCommitAt - started; // how long this commit took
    chatStats.commitMsTotal += chatStats.lastCommitMs;
    chatStats.commitMsMax = Math.max(chatStats.commitMsMax, chatStats.lastCommitMs);
  }

  function onVisibilityChange() {
    if (!doc.hidden) flush();
  }

  function dispose() {
    if (frame !== null) win.cancelAnimationFrame(frame);
    frame = null;
    doc.removeEventListener("visibilitychange", onVisibilityChange);
  }

  doc.addEventListener("visibilitychange", onVisibilityChange);
  return { request, flush, dispose };
}

const carets = new WeakMap(); // root -> its caret, so moving it does not search the whole answer

/** Put the blinking caret after the last rendered text inside `root` (moving it if it is there). */
export function placeCaret(root) {
  let caret = carets.get(root);
  if (!caret) {
    caret = document.createElement("span");
    caret.className = "caret";
    caret.setAttribute("aria-hidden", "true");
    carets.set(root, caret);
  }
  caret.remove(); // out first, so the host is found without it
  caretHost(root).append(caret);
}

export function removeCaret(root) {
  carets.get(root)?.remove();
  carets.delete(root);
  for (const el of root.querySelectorAll(".caret")) el.remove();
}

const LEAF_STOP = new Set(["IMG", "HR", "BR", "TABLE", "INPUT"]);

/** The deepest last element that can hold inline text (a paragraph, list item, code...). */
function caretHost(root) {
  let host = root;
  for (;;) {
    const last = host.lastElementChild;
    if (!last || LEAF_STOP.has(last.tagName) || last.classList.contains("code-head")) return host;
    host = last;
  }
}
