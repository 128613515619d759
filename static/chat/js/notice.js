// The composer's notice: why the server refused a message (limits, a busy or restarting server,
// a message too long), in plain words next to the message box, never in a dialog. The element is
// a polite live region that is always on the page (empty when there is nothing to say), so
// screen readers announce each new notice. The typed text stays in the composer meanwhile.
//
//   const notice = createComposerNotice({ element });
//   notice.show(error)   an ApiError from a refused post ({status, code, message, retryAfter})
//   notice.clear()       the next message was accepted

/** Plain words for a refused post: {text, wait} (wait: seconds after which it may work, or null). */
export function refusalText({ status, code, message = "", retryAfter = null } = {}) {
  const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.ceil(retryAfter) : null;
  const later = wait ? `try again in ${wait} s` : "try again in a moment";
  switch (code) {
    case "too_many_answers": {
      const count = /(\d+) answers?\b/.exec(message)?.[1];
      if (count === "1") return { text: "You have an answer streaming already; wait for it to finish.", wait: null };
      if (count) return { text: `You have ${count} answers streaming already; wait for one to finish.`, wait: null };
      return { text: "You have as many answers streaming as you may; wait for one to finish.", wait: null };
    }
    case "rate_limited":
      return { text: `You're sending messages too fast; ${later}.`, wait };
    case "server_busy":
      return { text: `The server is busy; ${later}.`, wait };
    case "draining":
      return { text: `The server is restarting; ${later}.`, wait };
    case "unavailable":
      return { text: `The server can't take messages right now; ${later}.`, wait };
    case "answer_in_progress":
      return { text: "An answer is still being written in this conversation; wait for it or stop it.", wait: null };
    case "content_too_long":
    case "body_too_large":
      return { text: "Your message is too long to send; shorten it and try again.", wait: null };
    default:
      if (status === 429 || status === 503) return { text: `The server can't take your message now; ${later}.`, wait };
      return { text: message || "Your message could not be sent.", wait: null };
  }
}

export const READY_AGAIN = "You can send your message now.";

export function createComposerNotice({ element, setTimer = setTimeout, clearTimer = clearTimeout }) {
  let timer = null;

  function show(error) {
    clearTimer(timer);
    timer = null;
    const { text, wait } = refusalText(error);
    element.textContent = text;
    element.dataset.code = error?.code || "";
    if (wait) {
      // Once the wait is over, say so (the live region announces it).
      timer = setTimer(() => {
        timer = null;
        element.textContent = READY_AGAIN;
      }, wait * 1000);
    }
  }

  function clear() {
    clearTimer(timer);
    timer = null;
    element.textContent = "";
    element.dataset.code = "";
  }

  return { show, clear, get text() { return element.textContent; } };
}
