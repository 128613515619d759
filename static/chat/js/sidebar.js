// The conversation list in the sidebar: render, mark the active one, switch and delete.

/** The trash icon, cloned from a <template> in the page. */
function trashIcon() {
  const template = document.getElementById("icon-trash");
  return template ? template.content.cloneNode(true) : document.createTextNode("×");
}

export function conversationTitle(conversation) {
  return (conversation.title || "").trim() || "New chat";
}

/** createSidebar({list, empty, onSelect(id), onDelete(id)}) -> {render(conversations, activeId), setActive(id)} */
export function createSidebar({ list, empty, onSelect, onDelete }) {
  list.addEventListener("click", (event) => {
    const item = event.target.closest(".conversation-item");
    if (!item) return;
    const id = Number(item.dataset.conversationId);
    if (event.target.closest(".delete-btn")) {
      event.preventDefault();
      onDelete(id);
      return;
    }
    const link = event.target.closest("a");
    if (link && !event.metaKey && !event.ctrlKey && !event.shiftKey && event.button === 0) {
      event.preventDefault();
      onSelect(id);
    }
  });

  function render(conversations, activeId) {
    list.replaceChildren(...conversations.map((c) => itemFor(c, c.id === activeId)));
    empty.hidden = conversations.length > 0;
  }

  function setActive(activeId) {
    for (const item of list.children) {
      const active = Number(item.dataset.conversationId) === activeId;
      item.classList.toggle("is-active", active);
      const link = item.querySelector("a");
      if (active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  return { render, setActive };
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
  const del = document.createElement("button");
  del.type = "button";
  del.className = "icon-btn delete-btn";
  del.setAttribute("aria-label", `Delete conversation “${title}”`);
  del.title = "Delete";
  del.append(trashIcon());
  item.append(link, del);
  return item;
}
