// The chat page: wires the sidebar, the message list, the composer and the answer stream.
// State is one plain object; every flow (open, send, stop, re-attach, retry) is a named function.

import * as api from "./api.js";
import { ApiError } from "./api.js";
import { createComposer } from "./composer.js";
import { createAssistantMessage, createUserMessage } from "./message.js";
import { createScrollFollower } from "./scroll.js";
import { conversationTitle, createSidebar } from "./sidebar.js";
import { ConnectionLost, followStream, postRequest } from "./stream.js";
import { copyToClipboard } from "./clipboard.js";

const $ = (id) => document.getElementById(id);

const state = {
  config: { max_content_chars: 32000 },
  conversations: [],
  conversationId: null,
  messageCount: 0,
  views: new Map(), // message root element -> assistant view
  active: null, // the answer being streamed: {view, controller, messageId, lastEventId, prompt, ...}
  background: new Set(), // answers of conversations switched away from, still read until `done`
  loadSeq: 0, // guards against a slow load finishing after a newer one
  loading: null, // the pending load of the shown conversation (send waits for it)
};

let ui;

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
    }),
    composer: createComposer({
      form: $("composer-form"),
      textarea: $("composer"),
      sendButton: $("send"),
      stopButton: $("stop"),
      counter: $("char-count"),
      maxChars: state.config.max_content_chars || 32000,
      onSend: send,
      onStop: stop,
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
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
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

async function removeConversation(id) {
  try {
    await api.deleteConversation(id);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      showBanner(errorText(error));
      return;
    }
  }
  state.conversations = state.conversations.filter((c) => c.id !== id);
  dropBackground((active) => active.conversationId === id);
  if (state.conversationId === id) {
    detachActive({ keepReading: false });
    history.pushState({}, "", "/");
    showEmpty();
  } else {
    ui.sidebar.render(state.conversations, state.conversationId);
  }
  announce("Conversation deleted");
}

function showEmpty() {
  detachActive();
  state.loadSeq += 1;
  state.conversationId = null;
  clearMessages();
  ui.sidebar.render(state.conversations, null);
  updateTitle();
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

async function loadConversation(id, { push }) {
  detachActive();
  const seq = ++state.loadSeq;
  state.conversationId = id;
  if (push && location.pathname !== `/c/${id}/`) history.pushState({}, "", `/c/${id}/`);
  ui.sidebar.render(state.conversations, id);
  updateTitle();
  clearMessages();
  hideBanner();
  let conversation;
  try {
    conversation = await api.getConversation(id);
  } catch (error) {
    if (seq !== state.loadSeq) return;
    showBanner(error instanceof ApiError && error.status === 404 ? "That conversation no longer exists." : errorText(error));
    return;
  }
  if (seq !== state.loadSeq) return;
  renderConversation(conversation);
}

function renderConversation(conversation) {
  clearMessages();
  let prompt = "";
  let streaming = null;
  for (const message of conversation.messages) {
    if (message.role === "user") {
      prompt = message.content;
      addUserMessage(message);
    } else if (message.status === "streaming") {
      streaming = { message, prompt };
    } else {
      const view = addAssistantMessage(message);
      if (message.status === "error") offerRetry(view, prompt, "The answer failed.");
    }
  }
  ui.follower.jumpToLatest();
  if (streaming) reattach(streaming.message, streaming.prompt);
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
  const view = createAssistantMessage({ ...message, onCommit: () => ui.follower.contentChanged() });
  state.views.set(view.root, view);
  ui.list.append(view.root);
  state.messageCount += 1;
  ui.empty.hidden = true;
  return view;
}

// ---------------------------------------------------------------- sending and streaming

async function send(content) {
  hideBanner();
  ui.composer.clear(); // at once: whatever is typed while we wait stays
  ui.composer.setState({ busy: true, streaming: false });
  // A message sent while the conversation is still loading goes after its history (rendering
  // the history clears the list, which would otherwise wipe the new exchange).
  while (state.loading) await state.loading.catch(() => {});
  if (state.active) {
    ui.composer.restore(content); // the loaded conversation has an answer streaming: wait for it
    return;
  }
  try {
    if (state.conversationId === null) await startConversation();
  } catch (error) {
    ui.composer.setState({ busy: false, streaming: false });
    ui.composer.restore(content);
    showBanner(errorText(error));
    return;
  }
  const conversationId = state.conversationId;
  const userView = addUserMessage({ content });
  const view = addAssistantMessage({ status: "streaming" });
  ui.follower.jumpToLatest();
  const request = postRequest(api.postMessageUrl(conversationId), content);
  const active = await runAnswer({ view, request, prompt: content, userView });
  if (active.failedBeforeStart && !active.background) {
    // The server refused the message (validation, limits): nothing was stored; put it back.
    userView.root.remove();
    view.root.remove();
    state.messageCount -= 2;
    ui.empty.hidden = state.messageCount > 0;
    ui.composer.restore(content);
  }
}

async function startConversation() {
  const conversation = await api.createConversation();
  state.conversations = [conversation, ...state.conversations];
  state.conversationId = conversation.id;
  state.loadSeq += 1;
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
  // We read this answer in the background since switching away: this connection takes over.
  dropBackground((active) => active.messageId === message.id);
  const view = addAssistantMessage({ ...message, content: snapshot ? message.content : "", status: "streaming" });
  ui.follower.jumpToLatest();
  runAnswer({ view, messageId: message.id, lastEventId: snapshot ? message.last_event_id : 0, prompt });
}

/** Follow one answer to its end, updating its view; returns the finished `active` record. */
async function runAnswer({ view, request = null, messageId = null, lastEventId = 0, prompt = "", userView = null }) {
  const active = {
    view, userView, prompt, messageId, lastEventId,
    controller: new AbortController(),
    conversationId: state.conversationId,
    stopping: false,
    done: false,
    failedBeforeStart: false,
  };
  // Resolves on `start`, or when this connection ends without one (Stop waits on it).
  active.started = new Promise((resolve) => {
    active.markStarted = resolve;
  });
  if (messageId != null) active.markStarted();
  state.active = active;
  setStreamingUi(true);
  try {
    await followStream({
      request,
      messageId,
      lastEventId,
      signal: active.controller.signal,
      onEvent: (event) => handleEvent(active, event),
      onReconnect: () => announce("Connection lost, reconnecting…"),
    });
  } catch (error) {
    if (!active.controller.signal.aborted) handleFailure(active, error);
  } finally {
    active.markStarted();
    state.background.delete(active); // `done`, given up or aborted: nothing holds it any more
    if (state.active === active && !active.stopping) {
      state.active = null;
      setStreamingUi(false);
    }
  }
  return active;
}

function handleEvent(active, { type, id, data }) {
  if (id != null) active.lastEventId = id;
  if (active.background) {
    handleBackgroundEvent(active, type, data);
    return;
  }
  switch (type) {
    case "start":
      active.messageId = data.message_id;
      active.markStarted();
      active.view.setId(data.message_id);
      if (active.userView && data.user_message_id != null) active.userView.setId(data.user_message_id);
      break;
    case "token":
      active.view.appendToken(data.text);
      break;
    case "error":
      active.error = data;
      break;
    case "done":
      finishAnswer(active, data);
      break;
    default:
      break; // unknown events are ignored, as the protocol may grow
  }
}

/**
 * An answer of a conversation we switched away from: its view is gone (switching back renders
 * the conversation afresh from the API and re-attaches), so the text is dropped; we only keep
 * the connection (the server stops an answer nobody follows) and note the message id.
 */
function handleBackgroundEvent(active, type, data) {
  if (type === "start") {
    active.messageId = data.message_id;
    active.markStarted();
    // Switched back before `start`: if that conversation already re-attached to this answer,
    // the other connection follows it, so this one can go.
    if (state.active && state.active !== active && state.active.messageId === active.messageId) {
      dropBackground((other) => other === active);
    }
  } else if (type === "done") {
    active.done = true;
    state.background.delete(active);
    refreshConversations(); // the title may have been set from the first message
  }
}

function finishAnswer(active, done) {
  active.done = true;
  active.view.finish(done);
  if (active.error || done.status === "error") {
    offerRetry(active.view, active.prompt, active.error?.message || "The answer failed.");
  }
  announce(done.status === "cancelled" ? "Answer stopped" : done.status === "complete" ? "Answer complete" : "Answer ended");
  refreshConversations(); // the title may have been set from the first message
}

/** Error box with a Retry that sends the same prompt again (the failed answer stays as it is). */
function offerRetry(view, prompt, message) {
  const action = prompt && { label: "Retry", run: () => !state.active && send(prompt) };
  view.showError(message, action || null);
}

function handleFailure(active, error) {
  if (active.background) return; // nothing shows it; switching back re-attaches if it still runs
  if (active.messageId == null && error instanceof ApiError) {
    active.failedBeforeStart = true;
    showBanner(errorText(error));
    return;
  }
  if (active.messageId == null) {
    // The POST broke before `start`; the server may have stored the message: ask it.
    active.view.showError("The connection was lost before the answer started.", {
      label: "Reload conversation",
      run: () => openConversation(active.conversationId, { push: false }),
    });
    active.view.finish({ status: "error" });
    return;
  }
  const message = error instanceof ConnectionLost ? "The connection was lost." : errorText(error);
  active.view.finish({ status: "interrupted" });
  active.view.showError(message, { label: "Reconnect", run: () => resumeAnswer(active) });
}

/** Pick an interrupted answer up again from the last event we have. */
function resumeAnswer(previous) {
  if (state.active || state.conversationId !== previous.conversationId) return;
  previous.view.resume();
  runAnswer({
    view: previous.view,
    messageId: previous.messageId,
    lastEventId: previous.lastEventId,
    prompt: previous.prompt,
  });
}

/**
 * Stop: abort our fetch (the server sees the client go), tell the server to cancel, then read
 * the stored tail from the last event id so the screen ends exactly as the stored answer does.
 * A Stop before `start` waits briefly for the message id: without it nothing can be cancelled.
 */
async function stop() {
  const active = state.active;
  if (!active || active.stopping || active.done) return;
  active.stopping = true;
  setStreamingUi(false, { busy: true });
  if (active.messageId == null) await active.started;
  active.controller.abort(new DOMException("Stopped by the user", "AbortError"));
  if (active.messageId == null) {
    if (!active.done) active.view.finish({ status: "cancelled", finish_reason: "cancelled" });
    releaseActive(active);
    return;
  }
  try {
    await api.cancelMessage(active.messageId);
  } catch {
    // The server could not be reached: keep what is shown, marked as stopped.
  }
  releaseActive(active); // the composer is usable again; the tail below only updates this view
  try {
    await settleStopped(active);
  } catch {
    // No tail to be had: what is shown stays.
  }
  if (!active.done) active.view.finish({ status: "cancelled", finish_reason: "cancelled" });
}

async function settleStopped(active) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("timeout", "TimeoutError")), 6000);
  try {
    await followStream({
      messageId: active.messageId,
      lastEventId: active.lastEventId,
      signal: controller.signal,
      onEvent: (event) => handleEvent(active, event),
      options: { maxAttempts: 2 },
    });
  } finally {
    clearTimeout(timer);
  }
}

function releaseActive(active) {
  if (state.active !== active) return;
  state.active = null;
  setStreamingUi(false);
}

/**
 * Switching away from a conversation whose answer is streaming: the answer goes on. We keep
 * reading its stream in the background (the server stops an answer nobody follows after a
 * short grace) until `done`, without rendering; switching back re-renders from the API and
 * re-attaches. Only Stop cancels. keepReading=false lets go of it altogether (deleted
 * conversation); closing the tab ends the fetch as well, and then the server's grace decides.
 */
function detachActive({ keepReading = true } = {}) {
  const active = state.active;
  if (!active) return;
  state.active = null;
  setStreamingUi(false);
  if (active.stopping) return; // stop() is finishing it: cancel sent or about to be
  if (keepReading && !active.done) {
    active.background = true;
    state.background.add(active);
  } else {
    active.controller.abort(new DOMException("Detached", "AbortError"));
  }
}

/** Stop reading (no cancel) the background answers that match. */
function dropBackground(match) {
  for (const active of [...state.background]) {
    if (!match(active)) continue;
    state.background.delete(active);
    active.controller.abort(new DOMException("Detached", "AbortError"));
  }
}

function setStreamingUi(streaming, { busy = streaming } = {}) {
  ui.composer.setState({ busy, streaming });
  if (streaming) ui.list.setAttribute("aria-busy", "true");
  else ui.list.removeAttribute("aria-busy");
}

// ---------------------------------------------------------------- copy

async function onMessageListClick(event) {
  const copyButton = event.target.closest("[data-testid=copy]");
  if (copyButton) {
    const view = state.views.get(copyButton.closest("[data-testid=message]"));
    if (view) await copyWithFeedback(copyButton, view.copyText());
    return;
  }
  const codeButton = event.target.closest(".code-copy");
  if (codeButton) {
    const code = codeButton.closest(".code-block")?.querySelector("pre");
    if (code) await copyWithFeedback(codeButton, code.textContent);
  }
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
