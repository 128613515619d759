// Delete with an undo window: the conversation leaves the list at once, a toast offers "Undo" for a
// few seconds, and only then is the DELETE sent. One deletion waits at a time: a second one sends
// the first at once. Leaving the page sends the waiting one (a keepalive fetch outlives the page).

import { requestHeaders } from "./api.js";

export const UNDO_WINDOW_MS = 5000;

/**
 * createUndoDelete({toast, text, button, remove(id) -> Promise, onUndo(id, data), onDeleted(id),
 * onFailed(id, data, error)}) -> {schedule(id, label, data), flush(), pending(id)}
 */
export function createUndoDelete({ toast, text, button, remove, onUndo, onDeleted, onFailed, windowMs = UNDO_WINDOW_MS }) {
  let waiting = null; // {id, data, timer}

  button.addEventListener("click", () => {
    if (!waiting) return;
    const { id, data } = waiting;
    clearTimeout(waiting.timer);
    waiting = null;
    hideToast();
    onUndo(id, data);
  });

  // pagehide: a reload, a link away, closing the tab (also when the page may go to the back/forward cache).
  window.addEventListener("pagehide", () => {
    if (!waiting) return;
    const { id } = waiting;
    clearTimeout(waiting.timer);
    waiting = null;
    fetch(`/api/conversations/${id}/`, {
      method: "DELETE",
      headers: requestHeaders("DELETE"),
      credentials: "same-origin",
      keepalive: true,
    }).catch(() => {});
  });

  function schedule(id, label, data = null) {
    flush(); // the one before goes now
    waiting = { id, data, timer: setTimeout(flush, windowMs) };
    text.textContent = `Deleted “${label}”.`;
    button.setAttribute("aria-label", `Undo deleting “${label}”`);
    toast.hidden = false;
  }

  /** Send the waiting deletion now. */
  function flush() {
    if (!waiting) return;
    const { id, data, timer } = waiting;
    clearTimeout(timer);
    waiting = null;
    hideToast();
    remove(id).then(
      () => onDeleted(id),
      (error) => onFailed(id, data, error),
    );
  }

  function hideToast() {
    toast.hidden = true;
  }

  return { schedule, flush, pending: (id) => waiting?.id === id };
}
