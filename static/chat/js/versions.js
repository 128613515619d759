// Turns with versions (regenerate, edit) and the actions that make them: the `‹ 2/3 ›` control,
// and the Regenerate, Continue and Edit buttons. Pure DOM helpers; app.js decides what they do.

/** Which actions a message on screen offers (the server refuses the others anyway). */
export function actionsFor(message, { isLast }) {
  if (message.role === "user") return { edit: true };
  const finished = message.status !== "streaming";
  const endedEarly =
    ["cancelled", "interrupted", "error"].includes(message.status) ||
    (message.status === "complete" && message.stats?.finish_reason === "length");
  return { regenerate: finished && isLast, continue: finished && isLast && endedEarly };
}

/** `‹ n/m ›` for a message with versions; onPick(id) shows the branch through version id. */
export function createVersionNav(version, onPick) {
  const nav = document.createElement("span");
  nav.className = "version-nav";
  nav.setAttribute("role", "group");
  nav.setAttribute("aria-label", "Versions");
  const prev = navButton("‹", "version-prev", "Previous version");
  const next = navButton("›", "version-next", "Next version");
  const label = document.createElement("span");
  label.dataset.testid = "version-label";
  label.className = "version-label";
  label.textContent = `${version.index}/${version.count}`;
  label.setAttribute("aria-label", `Version ${version.index} of ${version.count}`);
  prev.disabled = version.index <= 1;
  next.disabled = version.index >= version.count;
  prev.addEventListener("click", () => onPick(version.ids[version.index - 2]));
  next.addEventListener("click", () => onPick(version.ids[version.index]));
  nav.append(prev, label, next);
  return nav;
}

function navButton(text, testid, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn version-btn";
  button.dataset.testid = testid;
  button.textContent = text;
  button.setAttribute("aria-label", label);
  return button;
}

/** A small labelled button for a message's action row. */
export function actionButton(text, testid, label) {
  const button = navButton(text, testid, label);
  button.className = "btn action-btn";
  button.hidden = true;
  return button;
}

/**
 * Edit a user message in place: a textarea with Save and Cancel. Enter saves (Shift+Enter breaks
 * the line), Esc cancels. onSave(text) gets the new text; the editor removes itself either way.
 */
export function openEditor(textEl, { initial, maxChars, onSave, onCancel }) {
  const form = document.createElement("form");
  form.className = "edit-form";
  const area = document.createElement("textarea");
  area.dataset.testid = "edit-input";
  area.setAttribute("aria-label", "Edit your message");
  area.value = initial;
  if (maxChars) area.maxLength = maxChars;
  area.rows = Math.min(8, Math.max(2, initial.split("\n").length));
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "btn btn-primary";
  save.dataset.testid = "edit-save";
  save.textContent = "Save and send";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "btn";
  cancel.textContent = "Cancel";
  form.append(area, save, cancel);
  textEl.hidden = true;
  textEl.after(form);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);

  const close = () => {
    form.remove();
    textEl.hidden = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = area.value;
    if (!text.trim()) return;
    close();
    onSave(text);
  });
  cancel.addEventListener("click", () => {
    close();
    onCancel?.();
  });
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // not the page's Esc (which stops an answer)
      cancel.click();
    }
  });
  return close;
}
