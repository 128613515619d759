// The DOM of one message. User text goes in with textContent; assistant text through the
// Markdown view (sanitized). An assistant message being streamed buffers its tokens and commits
// them at most once per frame.

import { createMarkdownView } from "./markdown.js";
import { chatStats, createFrameBatcher, placeCaret, removeCaret } from "./render.js";
import { formatStats, statusLabel } from "./format.js";
import { createFeedback } from "./feedback.js";
import { actionButton, createVersionNav } from "./versions.js";

function element(tag, className, attrs = {}) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  return el;
}

/** A user message: plain text, never parsed. */
export function createUserMessage({ id = null, content, status = "complete" }) {
  const root = element("article", "message", { "data-testid": "message", "data-role": "user", "data-status": status });
  if (id != null) root.dataset.messageId = id;
  const label = element("h3", "visually-hidden");
  label.textContent = "You said:";
  const text = element("div", "message-text", { "data-testid": "message-text" });
  text.textContent = content;
  const meta = element("div", "message-meta");
  const editButton = actionButton("Edit", "edit", "Edit message");
  meta.append(editButton);
  root.append(label, text, meta);
  const view = {
    root,
    content,
    text,
    setId: (value) => (root.dataset.messageId = value),
    setText: (value) => {
      view.content = value;
      text.textContent = value;
    },
    setActions: ({ edit = false } = {}) => (editButton.hidden = !edit),
    setVersion: (version, onPick) => setVersionNav(meta, version, onPick),
  };
  return view;
}

/** Show `‹ n/m ›` in a message's meta row when its turn has versions (else remove it). */
function setVersionNav(meta, version, onPick) {
  meta.querySelector(".version-nav")?.remove();
  if (version && version.count > 1) meta.prepend(createVersionNav(version, onPick));
}

/**
 * An assistant message. onCommit() runs after each DOM commit (to keep the scroll position);
 * onRetry() is what the Retry button of an error does.
 */
export function createAssistantMessage({
  id = null,
  content = "",
  status = "streaming",
  stats = null,
  feedback = null,
  feedbackMaxChars,
  onCommit = () => {},
}) {
  const root = element("article", "message", { "data-testid": "message", "data-role": "assistant", "data-status": status });
  if (id != null) root.dataset.messageId = id;
  const label = element("h3", "visually-hidden");
  label.textContent = "Assistant said:";
  const text = element("div", "message-text md", { "data-testid": "message-text" });
  const errorBox = element("div", "message-error", { role: "alert" });
  errorBox.hidden = true;
  const meta = element("div", "message-meta");
  const copyButton = element("button", "btn copy-btn", { type: "button", "data-testid": "copy" });
  copyButton.textContent = "Copy";
  copyButton.setAttribute("aria-label", "Copy answer");
  const statusEl = element("span", "message-status");
  const statsEl = element("span", "message-stats");
  // Thumbs up/down with an optional comment: only on a finished answer (see updateFeedback).
  const feedbackUi = createFeedback({ messageId: () => root.dataset.messageId, initial: feedback, maxChars: feedbackMaxChars });
  const regenerateButton = actionButton("Regenerate", "regenerate", "Regenerate answer");
  const continueButton = actionButton("Continue", "continue", "Continue answer");
  meta.append(copyButton, regenerateButton, continueButton, feedbackUi.controls, statusEl, statsEl);
  root.append(label, text, errorBox, meta, feedbackUi.form);

  const view = createMarkdownView(text);
  let buffer = content; // everything received
  let unseen = content; // received since the last commit: what the view has not been given yet
  let shown = ""; // what the DOM shows (the last commit)
  let streaming = status === "streaming";
  const batcher = createFrameBatcher(commit);

  // A commit costs the new text, not the whole answer: the view gets only what came since.
  function commit() {
    view.append(unseen);
    unseen = "";
    const { deferred } = view.render({ final: !streaming });
    if (!deferred) shown = buffer;
    if (streaming) placeCaret(text);
    else removeCaret(text);
    onCommit();
    if (deferred) batcher.request(); // the open block waits for its render budget: next frame
  }

  function appendToken(piece) {
    if (!piece) return;
    buffer += piece;
    unseen += piece;
    chatStats.tokens += 1;
    batcher.request();
  }

  function setStatus(value) {
    root.dataset.status = value;
    if (value === "streaming") {
      regenerateButton.hidden = true; // offered again, where they apply, once it has ended
      continueButton.hidden = true;
    }
    const label = statusLabel(value);
    statusEl.textContent = label;
    statusEl.hidden = !label;
    updateFeedback();
  }

  function setId(value) {
    root.dataset.messageId = value;
    updateFeedback();
  }

  function updateFeedback() {
    feedbackUi.setAvailable(root.dataset.status !== "streaming" && root.dataset.messageId != null);
  }

  /** Back to streaming (a resumed answer): the last block is open again, so rebuild it. */
  function resume() {
    streaming = true;
    setStatus("streaming");
    view.clear();
    unseen = buffer;
    batcher.request();
  }

  /** The answer ended: render everything, drop the caret, show how it ended. */
  function finish({ status: finalStatus, stats: finalStats, finish_reason: reason } = {}) {
    streaming = false;
    setStatus(finalStatus || "complete");
    showStats(finalStats, reason);
    commit(); // one final, synchronous commit: correct even in a hidden tab
  }

  function showStats(value, reason) {
    root.dataset.finishReason = reason || ""; // Continue is offered after `length`
    const line = formatStats(value, reason);
    statsEl.textContent = line;
    statsEl.hidden = !line;
  }

  /** An inline error under the partial answer, with an optional action button. */
  function showError(message, action = null) {
    errorBox.replaceChildren();
    const p = element("p");
    p.textContent = message;
    errorBox.append(p);
    if (action) {
      const button = element("button", "btn", { type: "button" });
      button.textContent = action.label;
      button.addEventListener("click", () => {
        clearError();
        action.run();
      });
      errorBox.append(button);
    }
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.replaceChildren();
  }

  /** Start over with new content (e.g. a replay from the first event). */
  function resetContent(value = "") {
    buffer = value;
    unseen = value;
    shown = "";
    view.clear();
    batcher.request();
  }

  setStatus(status);
  showStats(stats, stats?.finish_reason);
  if (content || streaming) commit();

  return {
    root,
    appendToken,
    finish,
    showError,
    clearError,
    resetContent,
    setStatus,
    resume,
    dispose: () => batcher.dispose(),
    /** Which of Regenerate and Continue it offers (versions.js actionsFor). */
    setActions: ({ regenerate = false, continue: more = false } = {}) => {
      regenerateButton.hidden = !regenerate;
      continueButton.hidden = !more;
    },
    setVersion: (version, onPick) => setVersionNav(meta, version, onPick),
    /** Mid-answer: the text on screen; after it: the whole Markdown source. */
    copyText: () => (streaming ? shown : buffer),
    get text() {
      return buffer;
    },
    get streaming() {
      return streaming;
    },
    setId,
  };
}
