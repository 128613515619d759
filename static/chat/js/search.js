// Searching conversations from the sidebar, and showing the message a result points at.

const DEBOUNCE_MS = 250;
const HIGHLIGHT_MS = 2500;

/**
 * createSearch({input, search(q) -> Promise<results>, showResults(results, q), endSearch(), onError(error)})
 * -> {clear(), get query}
 * Results come while typing (after a short pause); only the latest query's answer is shown.
 */
export function createSearch({ input, search, showResults, endSearch, onError }) {
  let timer = null;
  let seq = 0;

  function run() {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      endSearch();
      return;
    }
    search(q).then(
      (results) => mine === seq && showResults(results, q),
      (error) => mine === seq && onError(error),
    );
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    if (!input.value.trim()) run(); // cleared: the list comes back at once
    else timer = setTimeout(run, DEBOUNCE_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(timer);
      run();
    } else if (event.key === "Escape" && input.value) {
      event.preventDefault(); // Esc clears the search (and does not stop an answer)
      event.stopPropagation();
      clear();
    }
  });

  function clear() {
    clearTimeout(timer);
    input.value = "";
    run();
  }

  return {
    clear,
    get query() {
      return input.value.trim();
    },
  };
}

/** The message id of a `#message-<id>` address, or null. */
export function messageIdFromHash(hash = location.hash) {
  const match = /^#message-(\d+)$/.exec(hash);
  return match ? Number(match[1]) : null;
}

/**
 * Scroll a shown message into view and highlight it for a moment. Returns whether it is on screen
 * (a message of another branch, or deleted since, is not).
 */
export function revealMessage(list, messageId, follower = null) {
  const target = list.querySelector(`[data-testid=message][data-message-id="${messageId}"]`);
  if (!target) return false;
  follower?.stopFollowing?.(); // reading back: a streaming answer must not pull the page down
  target.scrollIntoView({ block: "center" });
  target.classList.add("is-found");
  target.dataset.found = "true";
  clearTimeout(target._foundTimer);
  target._foundTimer = setTimeout(() => {
    target.classList.remove("is-found");
    delete target.dataset.found;
  }, HIGHLIGHT_MS);
  return true;
}

/** After a conversation is shown: go to the message its address names, then drop the #fragment. */
export function revealFromHash(list, follower) {
  const messageId = messageIdFromHash();
  if (messageId === null) return false;
  const shown = revealMessage(list, messageId, follower);
  history.replaceState(history.state, "", location.pathname + location.search);
  return shown;
}
