// The conversation list in the sidebar: render, mark the active one, switch, rename inline and
// delete; and, while a search is typed, its results (each match a link to the message).

/** The trash icon, cloned from a <template> in the page. */
function trashIcon() {
  const template = document.getElementById("icon-trash");
  return template ? template.content.cloneNode(true) : document.createTextNode("×");
}

function pencilIcon() {
  const template = document.getElementById("icon-pencil");
  return template ? template.content.cloneNode(true) : document.createTextNode("✎");
}

export function conversationTitle(conversation) {
  return (conversation.title || "").trim() || "New chat";
}

/** Where a search match leads: the conversation, scrolled to that message. */
export const matchUrl = (conversationId, messageId) => `/c/${conversationId}/#message-${messageId}`;

const MAX_TITLE_CHARS = 200;

/**
 * createSidebar({list, empty, heading, onSelect(id), onOpenMatch(id, messageId), onDelete(id),
 * onRename(id, title) -> Promise<boolean>})
 *   -> {render(conversations, activeId), setActive(id), hide(id), unhide(id), showResults(results, query),
 *       endSearch()}
 *
 * Hidden ids (deleted, within their undo window) are left out of every render. While results are
 * shown, render() only remembers the list: endSearch() draws it again.
 */
export function createSidebar({ list, empty, heading, onSelect, onOpenMatch, onDelete, onRename }) {
  let conversations = [];
  let activeId = null;
  let searching = false;
  const hidden = new Set();
  const emptyText = empty.textContent;
  const headingText = heading ? heading.textContent : "";
  let editor = null; // {id, input}: the rename box that is open, kept across renders

  list.addEventListener("click", (event) => {
    const item = event.target.closest(".conversation-item, .search-result");
    if (!item) return;
    const id = Number(item.dataset.conversationId);
    if (event.target.closest(".delete-btn")) {
      event.preventDefault();
      onDelete(id);
      return;
    }
    if (event.target.closest(".rename-btn")) {
      event.preventDefault();
      startRename(id);
      return;
    }
    const link = event.target.closest("a");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    if (link.dataset.messageId) onOpenMatch(id, Number(link.dataset.messageId));
    else onSelect(id);
  });

  function render(next, nextActiveId) {
    conversations = next;
    activeId = nextActiveId;
    if (searching) {
      setActive(activeId);
      return;
    }
    const focused = focusedPart();
    const shown = conversations.filter((c) => !hidden.has(c.id));
    list.replaceChildren(...shown.map((c) => itemFor(c, c.id === activeId)));
    empty.textContent = emptyText;
    empty.hidden = shown.length > 0;
    if (editor) reopenEditor();
    // A redraw (a refresh, a rename saved) keeps the keyboard on the same part of the same entry.
    if (focused) list.querySelector(`[data-conversation-id="${focused.id}"] ${focused.part}`)?.focus({ preventScroll: true });
  }

  function focusedPart() {
    const active = document.activeElement;
    const item = active && list.contains(active) ? active.closest("[data-conversation-id]") : null;
    const part = ["conversation-link", "rename-btn", "delete-btn"].find((name) => active?.classList.contains(name));
    return item && part ? { id: item.dataset.conversationId, part: `.${part}` } : null;
  }

  function setActive(nextActiveId) {
    activeId = nextActiveId;
    for (const item of list.children) {
      const active = Number(item.dataset.conversationId) === activeId;
      item.classList.toggle("is-active", active);
      const link = item.querySelector("a");
      if (!link) continue;
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  function hide(id) {
    hidden.add(id);
    if (editor?.id === id) editor = null;
    list.querySelector(`[data-conversation-id="${id}"]`)?.remove();
    if (!searching) empty.hidden = list.children.length > 0;
  }

  function unhide(id) {
    hidden.delete(id);
    render(conversations, activeId);
  }

  // ---------------------------------------------------------------- rename

  function startRename(id) {
    const conversation = conversations.find((c) => c.id === id);
    if (!conversation || searching) return;
    const input = document.createElement("input");
    input.type = "text";
    input.className = "rename-input";
    input.dataset.testid = "rename-input";
    input.value = conversation.title || "";
    input.maxLength = MAX_TITLE_CHARS;
    input.setAttribute("aria-label", `New name for “${conversationTitle(conversation)}”`);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        finishRename(input, true, true);
      } else if (event.key === "Escape") {
        // Handled here: Esc must not also reach the page (which stops a streaming answer).
        event.preventDefault();
        event.stopPropagation();
        finishRename(input, false, true);
      }
    });
    input.addEventListener("blur", () => finishRename(input, true, false));
    editor = { id, input };
    reopenEditor();
    input.focus();
    input.select();
  }

  /** Put the open rename box in place of its entry's link (after a render made a new entry). */
  function reopenEditor() {
    const item = list.querySelector(`.conversation-item[data-conversation-id="${editor.id}"]`);
    if (!item) {
      editor = null;
      return;
    }
    const hadFocus = document.activeElement === editor.input;
    item.classList.add("is-renaming");
    item.querySelector(".conversation-link")?.replaceWith(editor.input);
    if (hadFocus) editor.input.focus();
  }

  /** Enter saves, Esc cancels, leaving the box saves; refocus: back to the entry's Rename button. */
  async function finishRename(input, save, refocus) {
    if (!editor || editor.input !== input) return; // finished already (Enter, then the blur)
    const { id } = editor;
    editor = null;
    const conversation = conversations.find((c) => c.id === id);
    const title = input.value.replace(/\s+/g, " ").trim();
    const changed = save && conversation && title !== (conversation.title || "");
    if (refocus) input.blur(); // (its blur handler finds the rename finished)
    const previous = conversation?.title;
    if (changed) conversation.title = title; // shown at once; a refusal puts the old name back
    render(conversations, activeId);
    if (refocus) list.querySelector(`[data-conversation-id="${id}"] .rename-btn`)?.focus({ preventScroll: true });
    if (changed && !(await onRename(id, title))) {
      conversation.title = previous;
      render(conversations, activeId);
    }
  }

  // ---------------------------------------------------------------- search results

  /** Show search results: [{id, title, matches: [{message_id, snippet}]}]. */
  function showResults(results, query) {
    searching = true;
    editor = null;
    if (heading) heading.textContent = "Search results";
    const shown = results.filter((c) => !hidden.has(c.id));
    list.replaceChildren(...shown.map((c) => resultFor(c, query, c.id === activeId)));
    empty.textContent = "No conversations match.";
    empty.hidden = shown.length > 0;
  }

  function endSearch() {
    if (!searching) return;
    searching = false;
    if (heading) heading.textContent = headingText;
    render(conversations, activeId);
  }

  return { render, setActive, hide, unhide, showResults, endSearch };
}

function itemFor(conversation, active) {
  const title = conversationTitle(conversation);
  const item = document.createElement("li");
  item.className = "conversation-item" + (active ? " is-active" : "");
  item.dataset.conversationId = conversation.id;
  const link = document.createElement("a");
  link.className = "conversation-link";
  link.href = `/c/${conversation.id}/`;
  link.dataset.testid = "conversation-link";
  link.textContent = title;
  link.title = title;
  if (active) link.setAttribute("aria-current", "page");
  const rename = document.createElement("button");
  rename.type = "button";
  rename.className = "icon-btn item-btn rename-btn";
  rename.dataset.testid = "rename";
  rename.setAttribute("aria-label", `Rename conversation “${title}”`);
  rename.title = "Rename";
  rename.append(pencilIcon());
  const del = document.createElement("button");
  del.type = "button";
  del.className = "icon-btn item-btn delete-btn";
  del.setAttribute("aria-label", `Delete conversation “${title}”`);
  del.title = "Delete";
  del.append(trashIcon());
  item.append(link, rename, del);
  return item;
}

function resultFor(conversation, query, active) {
  const title = conversationTitle(conversation);
  const item = document.createElement("li");
  item.className = "search-result" + (active ? " is-active" : "");
  item.dataset.conversationId = conversation.id;
  const link = document.createElement("a");
  link.className = "conversation-link search-title";
  link.href = `/c/${conversation.id}/`;
  link.dataset.testid = "search-result";
  link.title = title;
  link.append(...highlighted(title, query));
  item.append(link);
  if (conversation.matches?.length) {
    const matches = document.createElement("ul");
    matches.className = "search-matches";
    for (const match of conversation.matches) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.className = "search-match";
      a.href = matchUrl(conversation.id, match.message_id);
      a.dataset.testid = "search-match";
      a.dataset.messageId = match.message_id;
      a.append(...highlighted(match.snippet, query));
      li.append(a);
      matches.append(li);
    }
    item.append(matches);
  }
  return item;
}

/** Text with each word of the query in a <mark>, built from text nodes (snippets are plain text). */
export function highlighted(text, query) {
  const words = query
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (!words.length) return [document.createTextNode(text)];
  const pattern = new RegExp(`(${words.join("|")})`, "giu");
  return text.split(pattern).map((part, i) => {
    if (i % 2 === 0) return document.createTextNode(part);
    const mark = document.createElement("mark");
    mark.textContent = part;
    return mark;
  });
}
