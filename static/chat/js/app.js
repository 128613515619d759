// The chat page: wires the sidebar, the message list, the composer and the banners. Running
// answers (stream, stop, re-attach, background reading, retry) live in answers.js; the shown
// conversation's WebSocket (Stop, answers started elsewhere, typing) in socket.js and typing.js.
// State is one plain object; every flow (open, send, re-attach) is a named function.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { createAnswers } from "./answers.js";
import { createComposer } from "./composer.js";
import { createAssistantMessage, createUserMessage } from "./message.js";
import { actionsFor, openEditor } from "./versions.js";
import { codeBlockText } from "./markdown.js";
import { createScrollFollower } from "./scroll.js";
import { conversationTitle, createSidebar, matchUrl } from "./sidebar.js";
import { createSearch, messageIdFromHash, revealFromHash, revealMessage } from "./search.js";
import { createUndoDelete } from "./undo.js";
import { createModelPicker } from "./model_picker.js";
import { createConversationSocket } from "./socket.js";
import { createComposerNotice } from "./notice.js";
import { ConnectionLost, postRequest } from "./stream.js";
import { createTypingIndicator, createTypingSender } from "./typing.js";
import { copyToClipboard } from "./clipboard.js";

const $ = (id) => document.getElementById(id);

const state = {
  config: { max_content_chars: 32000 },
  conversations: [],
  conversationId: null,
  messageCount: 0,
  views: new Map(), // message root element -> assistant view
  loadSeq: 0, // guards against a slow load finishing after a newer one
  loading: null, // the pending load of the shown conversation (send waits for it)
  sending: false, // a message is on its way, before its answer is followed
  missedGeneration: false, // a generation frame came while sending and was set aside
  socket: null, // the shown conversation's WebSocket
  refresh: null, // a pending reload of the shown conversation (answers started or ended elsewhere)
  refreshAgain: false,
  path: null, // the message whose branch is on screen (‹ › picked it); null: the newest
  leafId: null, // the last message on screen: a new message follows it
};

let ui;

const answers = createAnswers({
  setStreaming: setStreamingUi,
  announce,
  showBanner,
  errorText,
  refreshConversations,
  openConversation: (id) => openConversation(id, { push: false }),
  currentConversationId: () => state.conversationId,
  retry: send,
  sendCancel: (messageId) => state.socket?.send({ type: "cancel", message_id: messageId }) ?? false,
  accepted: () => ui.notice.clear(),
});

const typing = createTypingSender({
  send: (value) => state.socket?.send({ type: "typing", typing: value }) ?? false,
});

function init() {
  state.config = { ...state.config, ...readJson("chat-config") };
  const initialId = readJson("conversation-id");
  ui = buildUi();
  bindGlobalEvents();
  refreshConversations();
  if (initialId) openConversation(initialId, { push: false });
  else showEmpty();
  ui.composer.enable(); // the textarea ships disabled so nothing is typed before this point
  document.documentElement.dataset.ready = "true";
}

function readJson(id) {
  const el = $(id);
  try {
    return el ? JSON.parse(el.textContent) : null;
  } catch {
    return null;
  }
}

function buildUi() {
  const list = $("message-list");
  return {
    list,
    thread: $("thread"),
    empty: $("empty-state"),
    title: $("topbar-title"),
    banner: $("banner"),
    live: $("status-live"),
    follower: createScrollFollower($("thread"), $("jump-to-latest")),
    sidebar: createSidebar({
      list: $("conversation-list"),
      empty: $("conversation-empty"),
      onSelect: (id) => {
        closeSidebar();
        openConversation(id, { push: true });
      },
      onDelete: removeConversation,
      onRename: renameConversation,
      onOpenMatch: (id, messageId) => {
        closeSidebar();
        history.pushState({}, "", matchUrl(id, messageId)); // shown, the message is scrolled to
        openConversation(id, { push: false });
      },
      heading: $("conversations-heading"),
    }),
    composer: createComposer({
      form: $("composer-form"),
      textarea: $("composer"),
      sendButton: $("send"),
      stopButton: $("stop"),
      counter: $("char-count"),
      maxChars: state.config.max_content_chars || 32000,
      onSend: send,
      onStop: answers.stop,
      onEditLast: editLastUserMessage,
      onInput: (value) => (value.trim() ? typing.input() : typing.stop()),
      onBlur: () => typing.stop(),
    }),
    typingIndicator: createTypingIndicator({ element: $("typing-indicator") }),
    notice: createComposerNotice({ element: $("composer-notice") }),
    search: createSearch({
      input: $("conversation-search"),
      search: api.searchConversations,
      showResults: (results, q) => ui.sidebar.showResults(results, q),
      endSearch: () => {
        ui.sidebar.endSearch();
        refreshConversations(); // the results were fresh; the list may be older
      },
      onError: (error) => showBanner(errorText(error)),
    }),
    undo: createUndoDelete({
      toast: $("undo-toast"),
      text: $("undo-text"),
      button: $("undo-button"),
      remove: (id) => api.deleteConversation(id).catch((error) => {
        if (!(error instanceof ApiError && error.status === 404)) throw error; // gone already: done
      }),
      onUndo: restoreConversation,
      onDeleted: forgetConversation,
      onFailed: (id, data, error) => {
        restoreConversation(id, {});
        showBanner(errorText(error));
      },
    }),
    modelPicker: createModelPicker({
      select: $("model-picker"),
      refreshButton: $("model-refresh"),
      promptButton: $("system-prompt-button"),
      dialog: $("system-prompt-dialog"),
      promptInput: $("system-prompt-input"),
      cancelButton: $("system-prompt-cancel"),
      listModels: api.listModels,
      patch: api.patchConversation,
      currentConversationId: () => state.conversationId,
      onSaved: mergeConversation,
      onError: (error) => showBanner(errorText(error)),
    }),
  };
}

function bindGlobalEvents() {
  $("new-conversation").addEventListener("click", newConversation);
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    ui.composer.focus();
  });
  $("sidebar-open").addEventListener("click", openSidebar);
  $("sidebar-close").addEventListener("click", closeSidebar);
  $("sidebar-backdrop").addEventListener("click", closeSidebar);
  document.addEventListener("keydown", onEscape);
  ui.list.addEventListener("click", onMessageListClick);
  window.addEventListener("popstate", () => {
    const match = location.pathname.match(/^\/c\/(\d+)\/?$/);
    if (match) openConversation(Number(match[1]), { push: false });
    else showEmpty();
  });
}

// ---------------------------------------------------------------- sidebar and conversations

async function refreshConversations() {
  try {
    state.conversations = await api.listConversations();
    ui.sidebar.render(state.conversations, state.conversationId);
    updateTitle();
  } catch (error) {
    showBanner(errorText(error));
  }
}

function openSidebar() {
  $("app").classList.add("sidebar-open");
  $("sidebar-open").setAttribute("aria-expanded", "true");
  const first = document.querySelector(".conversation-item.is-active a, .conversation-link, #new-conversation");
  first?.focus();
}

function closeSidebar() {
  if (!$("app").classList.contains("sidebar-open")) return;
  $("app").classList.remove("sidebar-open");
  $("sidebar-open").setAttribute("aria-expanded", "false");
}

/** Esc closes the drawer if it is open, else stops the streaming answer (as the Stop button does). */
function onEscape(event) {
  if (event.key !== "Escape" || event.defaultPrevented || event.isComposing) return;
  if ($("app").classList.contains("sidebar-open")) {
    closeSidebar();
    return;
  }
  if ($("stop").hidden) return;
  event.preventDefault();
  $("stop").click();
}

/** Arrow-up in an empty composer: edit the last message sent, when it has an Edit button. */
function editLastUserMessage() {
  const sent = [...ui.list.querySelectorAll("[data-testid=message][data-role=user]")].filter((el) => !el.hidden);
  const edit = sent[sent.length - 1]?.querySelector("[data-testid=edit]");
  if (!edit || edit.disabled || edit.hidden) return false;
  edit.click();
  return true;
}

function updateTitle() {
  const current = state.conversations.find((c) => c.id === state.conversationId);
  const title = current ? conversationTitle(current) : "New chat";
  ui.title.textContent = title;
  document.title = `${title} · chatsite`;
}

async function newConversation() {
  closeSidebar();
  if (state.conversationId !== null && state.messageCount === 0) {
    ui.composer.focus(); // the current conversation is still empty: use it
    return;
  }
  try {
    const conversation = await api.createConversation();
    state.conversations = [conversation, ...state.conversations.filter((c) => c.id !== conversation.id)];
    await openConversation(conversation.id, { push: true });
  } catch (error) {
    showBanner(errorText(error));
  }
}

/** Delete: gone from the list at once, sent when the undo window passes (undo.js). */
function removeConversation(id) {
  const conversation = state.conversations.find((c) => c.id === id);
  const wasShown = state.conversationId === id;
  ui.sidebar.hide(id);
  if (wasShown) {
    history.pushState({}, "", "/");
    showEmpty(); // an answer streaming in it goes on (read in the background) until the DELETE stops it
  }
  ui.undo.schedule(id, conversation ? conversationTitle(conversation) : "New chat", { wasShown });
  announce("Conversation deleted. Undo is offered for a few seconds.");
}

function restoreConversation(id, { wasShown = false }) {
  ui.sidebar.unhide(id);
  announce("Conversation restored");
  if (wasShown && state.conversationId === null) openConversation(id, { push: true });
}

function forgetConversation(id) {
  state.conversations = state.conversations.filter((c) => c.id !== id);
  answers.dropConversation(id);
  ui.sidebar.render(state.conversations, state.conversationId);
}

async function renameConversation(id, title) {
  try {
    mergeConversation(await api.patchConversation(id, { title }));
    return true;
  } catch (error) {
    showBanner(errorText(error));
    return false;
  }
}

/** A conversation as the server now has it (renamed, another model...). */
function mergeConversation(saved) {
  state.conversations = state.conversations.map((c) => (c.id === saved.id ? { ...c, ...saved } : c));
  ui.sidebar.render(state.conversations, state.conversationId);
  updateTitle();
}

function showEmpty() {
  answers.detach();
  closeSocket();
  state.loadSeq += 1;
  state.conversationId = null;
  clearMessages();
  ui.sidebar.render(state.conversations, null);
  updateTitle();
  ui.modelPicker.show(null);
}

/** Show a conversation: its stored messages, and re-attach to an answer still streaming. */
function openConversation(id, options) {
  const loading = loadConversation(id, options);
  state.loading = loading;
  const settle = () => {
    if (state.loading === loading) state.loading = null;
  };
  loading.then(settle, settle);
  return loading;
}

async function loadConversation(id, { push, keep = false }) {
  if (id !== state.conversationId) state.path = null; // another conversation: its newest branch
  answers.detach();
  const seq = ++state.loadSeq;
  state.conversationId = id;
  openSocket(id);
  if (push && location.pathname !== `/c/${id}/`) history.pushState({}, "", `/c/${id}/`);
  ui.sidebar.render(state.conversations, id);
  updateTitle();
  if (!keep) {
    // keep: a refresh of the conversation on screen, which stays until the new copy replaces it.
    clearMessages();
    hideBanner();
  }
  let conversation;
  try {
    conversation = await api.getConversation(id, state.path);
  } catch (error) {
    if (seq !== state.loadSeq) return;
    showBanner(error instanceof ApiError && error.status === 404 ? "That conversation no longer exists." : errorText(error));
    return;
  }
  if (seq !== state.loadSeq) return;
  renderConversation(conversation, { keepScroll: keep });
  ui.modelPicker.show(conversation);
  if (keep) return;
  const wanted = messageIdFromHash(); // from a search result: /c/<id>/#message-<id>
  if (!revealFromHash(ui.list, ui.follower) && wanted !== null) await revealOnItsBranch(id, wanted, seq);
}

/** A search hit on another version of a turn: show the branch through it, as ‹ › would, then it. */
async function revealOnItsBranch(id, messageId, seq) {
  if (answers.isActive()) return; // an answer streams on the newest branch: it stays on screen
  let conversation;
  try {
    conversation = await api.getConversation(id, messageId);
  } catch {
    return; // deleted since: the newest branch stays
  }
  if (seq !== state.loadSeq || answers.isActive()) return;
  state.path = messageId;
  renderConversation(conversation);
  revealMessage(ui.list, messageId, ui.follower);
}

function renderConversation(conversation, { keepScroll = false } = {}) {
  // A refresh leaves a reader who scrolled up where they were; otherwise show the latest.
  const scrollTop = keepScroll && !ui.follower.following ? ui.thread.scrollTop : null;
  clearMessages();
  let prompt = "";
  let streaming = null;
  const messages = conversation.messages;
  state.leafId = messages.length ? messages[messages.length - 1].id : null;
  messages.forEach((message, i) => {
    let view = null;
    if (message.role === "user") {
      prompt = message.content;
      view = addUserMessage(message);
    } else if (message.status === "streaming") {
      streaming = { message, prompt };
    } else {
      view = addAssistantMessage(message);
      if (message.status === "error") answers.offerRetry(view, prompt, "The answer failed.");
    }
    if (view) {
      view.setActions(actionsFor(message, { isLast: i === messages.length - 1 }));
      view.setVersion(message.version, showVersion);
    }
  });
  ui.follower.jumpToLatest();
  if (streaming) reattach(streaming.message, streaming.prompt);
  if (scrollTop !== null) ui.thread.scrollTop = scrollTop;
}

function clearMessages() {
  for (const view of state.views.values()) view.dispose();
  state.views.clear();
  ui.list.replaceChildren();
  state.messageCount = 0;
  ui.empty.hidden = false;
}

function addUserMessage(message) {
  const view = createUserMessage(message);
  ui.list.append(view.root);
  state.messageCount += 1;
  ui.empty.hidden = true;
  return view;
}

function addAssistantMessage(message) {
  const view = createAssistantMessage({
    ...message,
    feedbackMaxChars: state.config.max_feedback_chars,
    onCommit: () => ui.follower.contentChanged(),
  });
  state.views.set(view.root, view);
  ui.list.append(view.root);
  state.messageCount += 1;
  ui.empty.hidden = true;
  return view;
}

// ---------------------------------------------------------------- sending and re-attaching

async function send(content) {
  hideBanner();
  typing.stop();
  ui.composer.clear(); // at once: whatever is typed while we wait stays
  ui.composer.setState({ busy: true, streaming: false });
  state.sending = true;
  state.missedGeneration = false;
  const exchange = await prepareExchange(content).finally(() => {
    state.sending = false; // from here answers.start follows it (no task runs in between)
  });
  if (!exchange) return;
  const { view, userView } = exchange;
  const { refused, error } = await answers.start(exchange);
  if (!refused) refreshActions();
  if (refused) {
    // The server refused the message (validation, limits, a busy server): nothing was stored.
    // Its bubbles go, the text goes back into the composer, and a notice says why in plain words.
    userView.root.remove();
    view.root.remove();
    state.views.delete(view.root);
    view.dispose();
    state.messageCount -= 2;
    ui.empty.hidden = state.messageCount > 0;
    ui.composer.restore(content);
    ui.notice.show(error);
    ui.composer.focus();
    // Refused because another tab's answer started meanwhile (its frame came while we sent): show it.
    if (state.missedGeneration) refreshShown();
  }
  state.missedGeneration = false;
}

/** Everything before the POST: wait for loads and stops, the conversation, the two messages. */
async function prepareExchange(content) {
  // A message sent while the conversation is still loading goes after its history (rendering
  // the history clears the list, which would otherwise wipe the new exchange); one sent just
  // after a Stop waits until the stopped answer is stored (the server takes one at a time).
  while (state.loading) await state.loading.catch(() => {});
  await answers.settled();
  while (state.loading) await state.loading.catch(() => {});
  if (answers.isActive()) {
    ui.composer.restore(content); // the loaded conversation has an answer streaming: wait for it
    return null;
  }
  try {
    if (state.conversationId === null) await startConversation();
  } catch (error) {
    ui.composer.setState({ busy: false, streaming: false });
    ui.composer.restore(content);
    showBanner(errorText(error));
    return null;
  }
  const conversationId = state.conversationId;
  const userView = addUserMessage({ content });
  const view = addAssistantMessage({ status: "streaming" });
  ui.follower.jumpToLatest();
  // It follows the branch on screen (an older version, if ‹ › picked one), and is the newest after.
  const parent = state.leafId != null ? { parent_id: state.leafId } : {};
  state.path = null;
  const request = postRequest(api.postMessageUrl(conversationId), content, parent);
  return { view, userView, request, prompt: content, conversationId };
}

// ---------------------------------------------------------------- versions, regenerate, edit, continue

/** ‹ ›: show the branch through another version of a turn. */
function showVersion(messageId) {
  if (answers.isActive() || state.sending || state.conversationId === null) return;
  state.path = messageId;
  openConversation(state.conversationId, { keep: true });
}

/**
 * Regenerate, Continue or Edit: like a send, a POST whose stream is followed in `view`. A refusal
 * (limits, an answer streaming) puts the conversation back as stored and says why.
 */
async function runTurn({ view, userView = null, request, prompt, messageId = null }) {
  hideBanner();
  state.path = null; // what this makes is the newest: it stays on screen
  const conversationId = state.conversationId;
  ui.follower.jumpToLatest();
  const { refused, error } = await answers.start({ view, userView, request, prompt, conversationId, messageId });
  if (refused) ui.notice.show(error);
  // The versions, and which actions apply, come with the conversation as stored.
  if (state.conversationId === conversationId) refreshShown();
}

function regenerate(root) {
  const messageId = Number(root.dataset.messageId);
  const old = state.views.get(root);
  if (!old || answers.isActive() || state.sending) return;
  const prompt = lastUserTextBefore(root);
  const view = addAssistantMessage({ status: "streaming" });
  root.replaceWith(view.root); // the new version takes the old one's place
  state.views.delete(root);
  state.messageCount -= 1;
  old.dispose();
  runTurn({ view, request: postRequest(api.regenerateUrl(messageId)), prompt });
}

function continueAnswer(root) {
  const view = state.views.get(root);
  if (!view || answers.isActive() || state.sending) return;
  view.clearError();
  view.resume(); // the same message: its text stays, the new tokens go after it
  const messageId = Number(root.dataset.messageId);
  runTurn({ view, request: postRequest(api.continueUrl(messageId)), prompt: lastUserTextBefore(root), messageId });
}

function editMessage(root) {
  if (answers.isActive() || state.sending || root.querySelector(".edit-form")) return;
  const text = root.querySelector("[data-testid=message-text]");
  openEditor(text, {
    initial: text.textContent,
    maxChars: state.config.max_content_chars,
    onSave: (content) => {
      if (answers.isActive() || state.sending) return;
      const messageId = Number(root.dataset.messageId);
      // What followed the old version stays on its own branch (‹ › finds it); here it goes.
      while (root.nextElementSibling) {
        const next = root.nextElementSibling;
        state.views.get(next)?.dispose();
        state.views.delete(next);
        next.remove();
        state.messageCount -= 1;
      }
      const userView = addUserMessage({ content });
      root.replaceWith(userView.root);
      state.messageCount -= 1;
      const view = addAssistantMessage({ status: "streaming" });
      runTurn({ view, userView, request: postRequest(api.editUrl(messageId), content), prompt: content });
    },
  });
}

/** After an answer ends here: which messages offer Edit, Regenerate and Continue, from the DOM. */
function refreshActions() {
  const roots = [...ui.list.querySelectorAll(":scope > [data-testid=message]")];
  roots.forEach((root, i) => {
    const message = { role: root.dataset.role, status: root.dataset.status, stats: { finish_reason: root.dataset.finishReason } };
    const actions = actionsFor(message, { isLast: i === roots.length - 1 });
    for (const name of ["edit", "regenerate", "continue"]) {
      const button = root.querySelector(`.message-meta [data-testid=${name}]`);
      if (button) button.hidden = !actions[name];
    }
  });
  const last = roots[roots.length - 1]?.dataset.messageId;
  state.leafId = last ? Number(last) : null;
}

function lastUserTextBefore(root) {
  let el = root.previousElementSibling;
  while (el && el.dataset.role !== "user") el = el.previousElementSibling;
  return el?.querySelector("[data-testid=message-text]")?.textContent || "";
}

async function startConversation() {
  const conversation = await api.createConversation();
  Object.assign(conversation, await ui.modelPicker.applyPending(conversation.id)); // chosen before it existed
  state.conversations = [conversation, ...state.conversations];
  state.conversationId = conversation.id;
  state.loadSeq += 1;
  openSocket(conversation.id);
  history.pushState({}, "", `/c/${conversation.id}/`);
  ui.sidebar.render(state.conversations, conversation.id);
  updateTitle();
}

/** Re-attach to an answer that is still being written (after a reload or a switch back). */
function reattach(message, prompt) {
  // The API gives the live text together with the event id it reaches: show it and follow from
  // there. Without that pair, replay every event from the first (last_event_id=0) and ignore the
  // stored checkpoint, which lags the stream and would double text.
  const snapshot = Number.isInteger(message.last_event_id);
  const view = addAssistantMessage({ ...message, content: snapshot ? message.content : "", status: "streaming" });
  ui.follower.jumpToLatest();
  answers.reattach({
    view,
    messageId: message.id,
    lastEventId: snapshot ? message.last_event_id : 0,
    prompt,
    conversationId: state.conversationId,
  });
}

function setStreamingUi(streaming, { busy = streaming } = {}) {
  ui.composer.setState({ busy, streaming });
  if (streaming) ui.list.setAttribute("aria-busy", "true");
  else ui.list.removeAttribute("aria-busy");
}

// ---------------------------------------------------------------- the conversation's WebSocket

/** One socket per shown conversation: a new one when another conversation is shown. */
function openSocket(conversationId) {
  if (state.socket?.conversationId === conversationId) return;
  closeSocket();
  let socket = null; // callbacks may run before the assignment below (a constructor that throws)
  socket = createConversationSocket({
    conversationId,
    onGeneration: (frame) => state.socket === socket && onGeneration(frame),
    onTyping: ({ user, typing: value }) => state.socket === socket && ui.typingIndicator.update(user, value),
    onStatus: ({ state: status, reconnected }) => {
      // Frames sent while we were away are lost: catch up on what changed meanwhile.
      if (state.socket === socket && status === "open" && reconnected) refreshIfIdle();
      if (state.socket === socket && status !== "open") ui.typingIndicator.clear();
    },
  });
  state.socket = socket;
  window.__chatSocket = socket; // for the browser tests
}

function closeSocket() {
  typing.stop(); // says `typing: false` while the old socket is still there
  ui.typingIndicator.clear();
  state.socket?.close();
  state.socket = null;
}

// A generation frame's end state, as the message status it leaves.
const STORED_STATUS = { finished: "complete", cancelled: "cancelled", error: "error", interrupted: "interrupted" };

/**
 * An answer of the shown conversation started or ended, maybe in another tab. If this page is
 * not reading it, reload the conversation: that shows the new question and re-attaches to the
 * answer's stream (the reattach path), or shows how an answer we were not following ended.
 */
function onGeneration({ message_id: messageId, state: generationState }) {
  if (answers.follows(messageId)) return; // ours: its own stream tells us everything
  if (state.sending || answers.isActive()) {
    // Our own answer is starting (its `start` has not come yet) or running: nothing to do, but
    // if our message is refused because of that other answer, we reload then.
    state.missedGeneration = true;
    return;
  }
  const shown = ui.list.querySelector(`[data-testid=message][data-role=assistant][data-message-id="${messageId}"]`);
  const status = STORED_STATUS[generationState];
  if (generationState === "started" ? !shown : !shown || shown.dataset.status !== status) refreshShown();
}

/** After the socket was down: reload, unless we are busy with an answer (its stream is exact). */
function refreshIfIdle() {
  if (!state.sending && !answers.isActive()) refreshShown();
}

/** Reload the shown conversation in place; calls while one runs coalesce into one more. */
function refreshShown() {
  if (state.conversationId === null) return;
  if (state.refresh) {
    state.refreshAgain = true;
    return;
  }
  state.refresh = (async () => {
    do {
      state.refreshAgain = false;
      await answers.settled(); // a stopped answer is stored first: the reload shows how it ended
      while (state.loading) await state.loading.catch(() => {});
      if (state.sending || answers.isActive() || state.conversationId === null) break;
      await openConversation(state.conversationId, { push: false, keep: true }).catch(() => {});
    } while (state.refreshAgain);
  })().finally(() => {
    state.refresh = null;
  });
}

// ---------------------------------------------------------------- copy

async function onMessageListClick(event) {
  const action = event.target.closest("[data-testid=regenerate], [data-testid=continue], [data-testid=edit]");
  if (action) {
    const root = action.closest("[data-testid=message]");
    if (action.dataset.testid === "regenerate") regenerate(root);
    else if (action.dataset.testid === "continue") continueAnswer(root);
    else editMessage(root);
    return;
  }
  const copyButton = event.target.closest("[data-testid=copy]");
  if (copyButton) {
    const view = state.views.get(copyButton.closest("[data-testid=message]"));
    if (view) await copyWithFeedback(copyButton, view.copyText());
    return;
  }
  const codeButton = event.target.closest("[data-testid=code-copy]");
  const box = codeButton?.closest(".code-block");
  if (box) await copyWithFeedback(codeButton, codeBlockText(box));
}

async function copyWithFeedback(button, text) {
  const ok = await copyToClipboard(text);
  const original = button.dataset.label || button.textContent;
  button.dataset.label = original;
  button.textContent = ok ? "Copied" : "Copy failed";
  announce(ok ? "Copied to clipboard" : "Could not copy");
  clearTimeout(button._resetTimer);
  button._resetTimer = setTimeout(() => {
    button.textContent = original;
  }, 1500);
}

// ---------------------------------------------------------------- small helpers

function errorText(error) {
  if (error instanceof ApiError) return error.message;
  if (error instanceof ConnectionLost) return error.message;
  return "Something went wrong. Check your connection and try again.";
}

function showBanner(text) {
  ui.banner.textContent = text;
  ui.banner.hidden = false;
}

function hideBanner() {
  ui.banner.hidden = true;
  ui.banner.textContent = "";
}

function announce(text) {
  ui.live.textContent = text;
}

init();
