// Markdown to safe DOM. Model text only reaches the page as marked's HTML sanitized by DOMPurify
// (returned as a DocumentFragment, so no innerHTML of model output anywhere).
//
// createMarkdownView(root) renders a growing answer: finished top-level blocks are appended once
// and kept; only the unfinished last block is rebuilt on each update.

import { marked } from "../../vendor/marked/marked.esm.js";
import DOMPurify from "../../vendor/dompurify/purify.es.mjs";
import { closeOpenMarkers, createBlockSplitter } from "./blocks.js";

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "option", "iframe", "dialog"],
  FORBID_ATTR: ["style", "autofocus"],
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
    if (node.tagName === "IMG") {
      node.setAttribute("referrerpolicy", "no-referrer");
      node.setAttribute("loading", "lazy");
    }
  });
}

/** Markdown source -> sanitized DocumentFragment, with code blocks given a header and copy button. */
export function renderMarkdown(source) {
  installHooks();
  const html = marked.parse(source, { async: false, gfm: true, breaks: false });
  const fragment = DOMPurify.sanitize(html, PURIFY_CONFIG);
  dropUnsafeImages(fragment);
  decorateCodeBlocks(fragment);
  return fragment;
}

/** Only absolute http(s) images load; anything else (e.g. src=x) shows its alt text instead. */
function dropUnsafeImages(fragment) {
  for (const img of fragment.querySelectorAll("img")) {
    if (!/^https?:\/\//i.test(img.getAttribute("src") || "")) {
      img.replaceWith(document.createTextNode(img.getAttribute("alt") || ""));
    }
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
    button.textContent = "Copy";
    button.setAttribute("aria-label", `Copy ${lang || "code"} block`);
    head.append(label, button);
    pre.replaceWith(box);
    box.append(head, pre);
  }
}

function languageOf(code) {
  const cls = [...code.classList].find((c) => c.startsWith("language-"));
  return cls ? cls.slice("language-".length) : "";
}

/** A view that keeps finished blocks and re-renders only the last, open one. */
export function createMarkdownView(root) {
  const splitter = createBlockSplitter((text) => marked.lexer(text, { gfm: true }));
  let liveEl = null;
  let blockRenders = 0;

  function update(source, { final = false } = {}) {
    const normalized = source.replace(/\r\n?/g, "\n");
    const { blocks, live } = splitter.update(normalized, final);
    for (const raw of blocks) root.insertBefore(blockElement(raw, false), liveEl);
    if (live) {
      const fresh = blockElement(closeOpenMarkers(live), true);
      if (liveEl) liveEl.replaceWith(fresh);
      else root.append(fresh);
      liveEl = fresh;
    } else if (liveEl) {
      liveEl.remove();
      liveEl = null;
    }
    return { blocks: blocks.length, live: Boolean(live) };
  }

  function blockElement(raw, isLive) {
    blockRenders += 1;
    const el = document.createElement("div");
    el.className = isLive ? "md-block md-live" : "md-block";
    el.append(renderMarkdown(raw));
    return el;
  }

  function clear() {
    splitter.reset();
    root.replaceChildren();
    liveEl = null;
  }

  return { update, clear, get blockRenders() { return blockRenders; } };
}
