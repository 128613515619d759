// Feedback on one finished answer: thumbs up or down (aria-pressed shows the choice), pressing the
// chosen one again takes it back, and after a choice a small comment form opens (Enter saves, Esc
// closes). The buttons show what the server stored, never a guess: each click waits for its answer.
//
//   const feedback = createFeedback({ messageId, initial, maxChars });
//   feedback.controls   the thumbs (and the comment, or "Add a comment"), for the message footer
//   feedback.form       the comment form, on a row of its own under the footer
//   feedback.setAvailable(bool)  offered only on a finished answer whose id is known

import { ApiError, deleteFeedback, putFeedback } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
// A thumb: the cuff on the left, the hand with the thumb up; thumbs down is the same turned over.
const THUMB = "M3 10h4v11H3zM7 10l4-7a2 2 0 0 1 3.4 1.9L13 10h6a2 2 0 0 1 2 2.3l-1.3 7A2 2 0 0 1 17.7 21H7";

function element(tag, className, attrs = {}) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  return el;
}

function thumbIcon(down) {
  const svg = document.createElementNS(SVG, "svg");
  for (const [name, value] of Object.entries({
    class: "icon",
    viewBox: "0 0 24 24",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": "1.8",
    "stroke-linejoin": "round",
    "aria-hidden": "true",
  })) {
    svg.setAttribute(name, value);
  }
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", THUMB);
  if (down) path.setAttribute("transform", "rotate(180 12 12)");
  svg.append(path);
  return svg;
}

/** Plain words for a failed save. */
export function feedbackErrorText(error) {
  if (error instanceof ApiError) {
    if (error.code === "answer_streaming") return "This answer is still being written; rate it when it ends.";
    if (error.code === "comment_too_long") return "That comment is too long; shorten it and save again.";
    if (error.status === 404) return "This answer no longer exists.";
    return error.message;
  }
  return "Could not save your feedback. Check your connection and try again.";
}

export function createFeedback({ messageId, initial = null, maxChars = 2000 }) {
  let rating = initial?.rating ?? 0; // 1 up, -1 down, 0 none
  let comment = initial?.comment ?? "";
  let pending = false;

  const controls = element("span", "feedback", { role: "group", "aria-label": "Rate this answer" });
  const up = element("button", "feedback-btn", {
    type: "button",
    "data-testid": "feedback-up",
    "aria-label": "Good answer",
    title: "Good answer",
  });
  up.append(thumbIcon(false));
  const down = element("button", "feedback-btn", {
    type: "button",
    "data-testid": "feedback-down",
    "aria-label": "Bad answer",
    title: "Bad answer",
  });
  down.append(thumbIcon(true));
  // The stored comment (click to edit it), or an offer to add one, once there is a rating.
  const note = element("button", "feedback-note", { type: "button", "data-testid": "feedback-note" });
  const error = element("span", "feedback-error", { "data-testid": "feedback-error", role: "alert" });
  const said = element("span", "visually-hidden", { role: "status" }); // confirmations, for screen readers
  error.hidden = true;
  controls.append(up, down, note, error, said);

  const form = element("form", "feedback-form", { "data-testid": "feedback-form", novalidate: "" });
  const inputId = `feedback-comment-${Math.random().toString(36).slice(2)}`;
  const label = element("label", "visually-hidden", { for: inputId });
  label.textContent = "Comment on this answer (optional)";
  const input = element("input", "feedback-input", {
    id: inputId,
    type: "text",
    "data-testid": "feedback-comment",
    maxlength: String(maxChars),
    autocomplete: "off",
    placeholder: "Add a comment (optional)",
  });
  const save = element("button", "btn feedback-save", { type: "submit", "data-testid": "feedback-save" });
  save.textContent = "Save";
  form.append(label, input, save);
  form.hidden = true;

  function render() {
    up.setAttribute("aria-pressed", String(rating === 1));
    down.setAttribute("aria-pressed", String(rating === -1));
    note.hidden = rating === 0 || !form.hidden;
    note.textContent = comment || "Add a comment";
    note.classList.toggle("has-comment", Boolean(comment));
    note.setAttribute("aria-label", comment ? `Your comment: ${comment}. Edit it` : "Add a comment");
  }

  function apply(saved) {
    rating = saved ? saved.rating : 0;
    comment = saved ? saved.comment : "";
    render();
  }

  /** Run one request at a time; returns its result, or undefined when it failed (shown). */
  async function request(call) {
    if (pending) return undefined;
    pending = true;
    controls.setAttribute("aria-busy", "true");
    showError("");
    try {
      return await call();
    } catch (failure) {
      showError(feedbackErrorText(failure));
      return undefined;
    } finally {
      pending = false;
      controls.removeAttribute("aria-busy");
    }
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  async function choose(value) {
    const id = messageId();
    if (id == null || pending) return;
    if (rating === value) {
      // Pressing the chosen thumb again takes the feedback back (comment included).
      if ((await request(() => deleteFeedback(id))) === undefined) return;
      closeForm({ focus: false });
      apply(null);
      said.textContent = "Feedback removed";
      return;
    }
    const saved = await request(() => putFeedback(id, { rating: value }));
    if (!saved) return;
    apply(saved);
    said.textContent = value === 1 ? "Marked as a good answer" : "Marked as a bad answer";
    openForm();
  }

  function openForm() {
    input.value = comment;
    form.hidden = false;
    render();
    input.focus();
  }

  function closeForm({ focus = true } = {}) {
    if (form.hidden) return;
    form.hidden = true;
    render();
    if (focus) (rating === -1 ? down : up).focus();
  }

  async function saveComment(event) {
    event.preventDefault();
    const id = messageId();
    if (id == null || rating === 0) return;
    const saved = await request(() => putFeedback(id, { rating, comment: input.value }));
    if (!saved) return;
    apply(saved);
    said.textContent = saved.comment ? "Comment saved" : "Comment removed";
    closeForm();
  }

  up.addEventListener("click", () => choose(1));
  down.addEventListener("click", () => choose(-1));
  note.addEventListener("click", openForm);
  form.addEventListener("submit", saveComment);
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation();
    closeForm();
  });

  /** Offered only on a finished answer with a known id: never while it streams. */
  function setAvailable(available) {
    controls.hidden = !available;
    if (!available) {
      form.hidden = true;
      render();
    }
  }

  render();
  return { controls, form, setAvailable };
}
