// The transcript on a conversation's admin change page (templates/admin/chat/conversation/).
//
// Every answer's Markdown goes through the chat page's own renderer (marked + DOMPurify). For staff
// who may watch (data-watch="true"), an answer that is streaming is followed live, read-only, over
// the very streams the owner's page uses: its SSE stream (GET /api/messages/<id>/stream/, from the
// first event) rendered in animation-frame batches, and the conversation's WebSocket for "typing…"
// and answer state. When an answer starts or ends, the page fetches itself again and swaps in the
// server's transcript, so statuses, figures and new messages are the stored ones.

import { copyToClipboard } from "./clipboard.js";
import { codeBlockText, createMarkdownView, renderMarkdown } from "./markdown.js";
import { createFrameBatcher, placeCaret, removeCaret } from "./render.js";
import { createConversationSocket } from "./socket.js";
import { followStream } from "./stream.js";
import { createTypingIndicator } from "./typing.js";

const section = document.getElementById("transcript");
const following = new Map(); // message id -> AbortController of its stream

if (section) start();

function start() {
  renderStored(document.getElementById("transcript-messages"));
  revealTarget();
  section.addEventListener("click", onClick);
  if (section.dataset.watch !== "true") return;
  const indicator = createTypingIndicator({ element: section.querySelector("[data-testid=typing-indicator]") });
  const socket = createConversationSocket({
    conversationId: section.dataset.conversationId,
    onTyping: ({ user, typing }) => indicator.update(user, typing),
    onGeneration: ({ state }) => {
      if (state === "started") refresh(); // a new question and its answer: show them, follow it
    },
    onStatus: ({ state, reconnected }) => {
      if (state === "open" && reconnected) refresh(); // frames may have been missed meanwhile
    },
  });
  window.__adminSocket = socket; // for the browser tests
  followStreaming();
}

/** Render the stored Markdown of each answer under `root` that is not streaming. */
function renderStored(root) {
  for (const el of root.querySelectorAll("[data-markdown]:not([data-rendered])")) {
    const status = el.closest("[data-testid=message]")?.dataset.status;
    if (status === "streaming" && section.dataset.watch === "true") continue; // its stream renders it
    el.replaceChildren(renderMarkdown(el.textContent));
    el.dataset.rendered = "true";
  }
}

/** The anchored message moved as Markdown rendered above it: bring it back into view. */
function revealTarget() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id.startsWith("message-")) document.getElementById(id)?.scrollIntoView({ block: "start" });
}

function followStreaming() {
  const live = document.querySelectorAll("#transcript-messages [data-role=assistant][data-status=streaming]");
  for (const article of live) follow(article);
  showLiveStatus();
}

/** Follow one streaming answer from its first event, re-rendering its text as tokens arrive. */
function follow(article) {
  const messageId = Number(article.dataset.messageId);
  if (following.has(messageId)) return;
  const controller = new AbortController();
  following.set(messageId, controller);
  const text = article.querySelector("[data-testid=message-text]");
  const view = createMarkdownView(text);
  let unseen = "";
  let streaming = true;
  const batcher = createFrameBatcher(commit);
  article.classList.add("is-live");

  function commit() {
    view.append(unseen);
    unseen = "";
    const { deferred } = view.render({ final: !streaming });
    if (streaming) placeCaret(text);
    else removeCaret(text);
    if (deferred) batcher.request(); // the open block waits for its render budget: next frame
  }

  function onEvent({ type, data }) {
    if (type === "start") {
      view.clear(); // the stored checkpoint goes: the stream replays the answer from its start
      text.dataset.rendered = "true";
    } else if (type === "token" && data.text) {
      unseen += data.text;
      batcher.request();
    }
  }

  followStream({ messageId, lastEventId: 0, signal: controller.signal, onEvent })
    .catch(() => {}) // gone, refused or given up: the refresh below shows what is stored
    .finally(() => {
      streaming = false;
      batcher.request();
      batcher.flush();
      batcher.dispose();
      removeCaret(text);
      following.delete(messageId);
      if (!controller.signal.aborted) refresh();
    });
}

let refreshing = false;
let refreshAgain = false;

/** Fetch this page again and swap in its transcript; one fetch at a time, the last request wins. */
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      await swapTranscript();
    } while (refreshAgain);
  } catch {
    // the next start or end of an answer tries again
  } finally {
    refreshing = false;
  }
}

async function swapTranscript() {
  const response = await fetch(location.pathname, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) return;
  // Our own server's page, its text escaped by the template; nothing in it runs (DOMParser).
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("transcript-messages");
  const current = document.getElementById("transcript-messages");
  if (!fresh || !current) return;
  for (const id of following.keys()) {
    // An answer still streaming keeps the element its stream is drawing into.
    const incoming = fresh.querySelector(`#message-${id}`);
    const drawing = current.querySelector(`#message-${id}`);
    if (incoming && drawing && incoming.dataset.status === "streaming") incoming.replaceWith(drawing);
  }
  const adopted = document.adoptNode(fresh);
  current.replaceWith(adopted);
  renderStored(adopted);
  followStreaming();
  window.__adminRefreshes = (window.__adminRefreshes || 0) + 1; // for the browser tests
}

function showLiveStatus() {
  const status = section.querySelector("[data-testid=live-status]");
  status.hidden = following.size === 0;
  status.textContent = following.size ? "● Watching the answer live (read-only)" : "";
}

async function onClick(event) {
  const button = event.target.closest(".code-copy");
  const box = button?.closest(".code-block");
  if (!box) return;
  const ok = await copyToClipboard(codeBlockText(box)); // exactly the code, as on the chat page
  button.textContent = ok ? "Copied" : "Copy failed";
  setTimeout(() => {
    button.textContent = "Copy";
  }, 1500);
}
