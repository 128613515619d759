// The model picker and the system prompt editor of the shown conversation. Both are remembered on
// the conversation (PATCH); for a chat not yet started they wait, and go with its first message.
// A conversation's "" means the default (the server's CHAT_MODEL, its default system prompt).

/**
 * createModelPicker({select, refreshButton, promptButton, dialog, promptInput, cancelButton,
 *   listModels(refresh) -> Promise<{models, default}>, patch(id, changes) -> Promise<conversation>,
 *   currentConversationId(), onSaved(conversation), onError(error)})
 * -> {show(conversation | null), applyPending(conversationId) -> Promise<conversation | null>}
 */
export function createModelPicker({
  select,
  refreshButton,
  promptButton,
  dialog,
  promptInput,
  cancelButton,
  listModels,
  patch,
  currentConversationId,
  onSaved,
  onError,
}) {
  let models = null; // ids, the default first; null until listed
  let defaultModel = "";
  let listError = null;
  let current = { id: null, model: "", system_prompt: "" }; // the shown conversation, or the new chat's choices
  let saving = 0; // PATCHes on their way: a reload meanwhile must not put the old values back

  select.addEventListener("change", () => {
    const model = select.value === defaultModel ? "" : select.value;
    save({ model });
  });
  refreshButton?.addEventListener("click", () => load(true));
  promptButton.addEventListener("click", openPrompt);
  cancelButton.addEventListener("click", () => dialog.close("cancel"));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") event.stopPropagation(); // closes the dialog; must not also stop an answer
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") save({ system_prompt: promptInput.value.trim() });
    promptButton.focus();
  });

  load(false);

  async function load(refresh) {
    refreshButton?.setAttribute("aria-busy", "true");
    try {
      const body = await listModels(refresh);
      models = body.models.map((m) => m.id);
      defaultModel = body.default;
      listError = null;
    } catch (error) {
      listError = error;
    } finally {
      refreshButton?.removeAttribute("aria-busy");
    }
    draw();
  }

  function draw() {
    const chosen = current.model || defaultModel;
    const ids = models ? [...models] : defaultModel ? [defaultModel] : [];
    if (chosen && !ids.includes(chosen)) ids.push(chosen); // no longer listed: still what it uses
    select.replaceChildren(
      ...ids.map((id) => {
        const option = document.createElement("option");
        option.value = id;
        option.textContent = id === defaultModel ? `${id} (default)` : models && !models.includes(id) ? `${id} (not listed)` : id;
        return option;
      }),
    );
    if (!ids.length) {
      const option = document.createElement("option");
      option.textContent = "Default model";
      select.append(option);
    }
    select.value = chosen;
    if (listError) {
      select.disabled = true;
      select.title = "The model list is unavailable right now; answers use the model shown.";
    } else if (models && models.length === 1 && ids.length === 1) {
      select.disabled = true;
      select.title = `Only one model is available: ${models[0]}`;
    } else {
      select.disabled = !models;
      select.title = "Model for this conversation's answers";
    }
    select.dataset.single = String(Boolean(models && ids.length === 1));
    const custom = Boolean(current.system_prompt);
    promptButton.classList.toggle("is-set", custom);
    promptButton.setAttribute("aria-pressed", String(custom));
    promptButton.title = custom ? "System prompt: this conversation's own" : "System prompt: the default";
  }

  /** The shown conversation (null: a new chat, whose choices wait for its first message). */
  function show(conversation) {
    if (!conversation) {
      if (current.id !== null) current = { id: null, model: "", system_prompt: "" };
    } else if (!(saving && current.id === conversation.id)) {
      current = { id: conversation.id, model: conversation.model || "", system_prompt: conversation.system_prompt || "" };
    }
    draw();
  }

  async function save(changes) {
    const before = { ...current };
    Object.assign(current, changes);
    draw();
    const id = currentConversationId();
    if (id === null || id !== current.id) return; // a new chat: applyPending sends them
    saving += 1;
    try {
      const saved = await patch(id, changes);
      if (current.id === saved.id) current = { id: saved.id, model: saved.model, system_prompt: saved.system_prompt };
      onSaved(saved);
    } catch (error) {
      if (current.id === id) current = before;
      onError(error);
    } finally {
      saving -= 1;
      draw();
    }
  }

  /** The new chat got its conversation: give it the choices made meanwhile; answers it as saved (or null). */
  async function applyPending(conversationId) {
    const changes = {};
    if (current.id === null && current.model) changes.model = current.model;
    if (current.id === null && current.system_prompt) changes.system_prompt = current.system_prompt;
    current = { ...current, id: conversationId };
    if (!Object.keys(changes).length) return null;
    saving += 1;
    try {
      return await patch(conversationId, changes);
    } catch (error) {
      current = { id: conversationId, model: "", system_prompt: "" };
      onError(error);
      return null;
    } finally {
      saving -= 1;
      draw();
    }
  }

  function openPrompt() {
    promptInput.value = current.system_prompt;
    dialog.returnValue = "";
    dialog.showModal();
    promptInput.focus();
  }

  return { show, applyPending };
}
