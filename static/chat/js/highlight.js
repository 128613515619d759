// Syntax highlighting of finished code blocks with the vendored highlight.js.
//
// Only blocks that can no longer change are highlighted: the Markdown view hands over a block once
// it is finished (a code fence once its closing line has ended, or the whole answer once it
// ended), never the open fence that grows by appended text. The work runs in its own tasks, a few
// milliseconds at a time, so a commit of streamed text never waits for it.
//
// highlight.js escapes the code it returns; its HTML is still passed through DOMPurify allowing
// only <span class>, and is used only if it shows exactly the same text as before.

import hljs from "../../vendor/highlight/highlight.min.js";
import DOMPurify from "../../vendor/dompurify/purify.es.mjs";

// Beyond this a block stays plain: highlighting costs about a millisecond per kilobyte, in one piece.
export const MAX_HIGHLIGHT_CHARS = 20000;
const TASK_BUDGET_MS = 8;
const SPANS_ONLY = { ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"], RETURN_DOM_FRAGMENT: true };

/** The language named by a <code>'s `language-xxx` class, if highlight.js knows it (else null). */
export function knownLanguage(className) {
  const match = /(?:^|\s)language-(\S+)/.exec(className || "");
  if (!match) return null;
  const language = hljs.getLanguage(match[1]);
  return language ? match[1] : null;
}

/** highlight.js HTML for `text` in `language`, or null when it is not highlighted (unknown, too long). */
export function highlightedHtml(text, language) {
  if (!language || !hljs.getLanguage(language) || text.length > MAX_HIGHLIGHT_CHARS) return null;
  return hljs.highlight(text, { language, ignoreIllegals: true }).value;
}

const queue = []; // <code> elements waiting to be highlighted, oldest first
let scheduled = false;

/** Highlight every code block in `root` soon (finished blocks only: see the top of this file). */
export function highlightLater(root) {
  for (const code of root.querySelectorAll(".code-block > pre > code")) queue.push(code);
  schedule();
}

function schedule() {
  if (scheduled || !queue.length) return;
  scheduled = true;
  setTimeout(runQueue, 0);
}

function runQueue() {
  scheduled = false;
  const until = performance.now() + TASK_BUDGET_MS;
  while (queue.length && performance.now() < until) highlightCode(queue.shift());
  schedule();
}

/** Replace a <code>'s text by its highlighted form (same text, in spans), once. */
export function highlightCode(code) {
  if (code.classList.contains("hljs")) return;
  const text = code.textContent;
  const html = highlightedHtml(text, knownLanguage(code.className));
  if (html === null) return;
  const fragment = DOMPurify.sanitize(html, SPANS_ONLY);
  if (fragment.textContent !== text) return; // never change what the code says
  code.replaceChildren(fragment);
  code.classList.add("hljs");
}
