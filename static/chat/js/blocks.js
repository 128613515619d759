// Pure helpers for streaming Markdown (no DOM; unit-tested under Node).
//
// createBlockSplitter(lex) cuts a growing Markdown source into finished top-level blocks and the
// one block still being written. A block is finished once a later non-blank block has begun
// (marked's lexer decides where blocks end), so the finished blocks' DOM can be kept and only the
// last block re-renders per frame. Only the unfinished tail is lexed each time.
//
// closeOpenMarkers(text) makes the unfinished block render cleanly mid-stream: it closes an open
// inline code span, ** / * / ~~ emphasis, and hides a link whose target is still arriving.

/**
 * lex(text) -> [{type, raw}] (marked.lexer); update(source, final) -> {blocks, live}:
 * `blocks` are the raw texts of blocks newly finished since the last call, `live` is the raw
 * text of the unfinished last block ("" if none).
 */
export function createBlockSplitter(lex) {
  let stableEnd = 0; // source offset up to which blocks are finished and handed out
  let lastSource = "";

  function update(source, final = false) {
    if (!source.startsWith(lastSource.slice(0, stableEnd))) stableEnd = 0; // source was replaced
    lastSource = source;
    const tail = source.slice(stableEnd);
    const tokens = lex(tail);
    if (tokens.map((t) => t.raw).join("") !== tail) {
      // The lexer dropped or rewrote text (e.g. a link definition): don't trust offsets.
      return final ? finishAll(tail) : { blocks: [], live: tail };
    }
    const cut = final ? tokens.length : lastContentIndex(tokens);
    const blocks = [];
    let consumed = 0;
    for (let i = 0; i < cut; i += 1) {
      consumed += tokens[i].raw.length;
      if (tokens[i].type !== "space") blocks.push(tokens[i].raw);
    }
    stableEnd += consumed;
    const live = tail.slice(consumed);
    return { blocks, live: live.trim() ? live : "" };
  }

  function finishAll(tail) {
    stableEnd += tail.length;
    return { blocks: tail.trim() ? [tail] : [], live: "" };
  }

  function reset() {
    stableEnd = 0;
    lastSource = "";
  }

  return { update, reset };
}

/** Index of the last token that is not blank space (tokens.length if there is none). */
function lastContentIndex(tokens) {
  for (let i = tokens.length - 1; i >= 0; i -= 1) {
    if (tokens[i].type !== "space") return i;
  }
  return tokens.length;
}

/** Is this block a fenced or indented code block (where markers must not be touched)? */
export function isCodeBlock(raw) {
  return /^ {0,3}(`{3,}|~{3,})/.test(raw) || /^( {4}|\t)/.test(raw);
}

/**
 * Close what an unfinished block left open so it renders as intended instead of showing stray
 * markers: inline code, **strong**, *em*, ~~del~~. A marker with nothing after it yet is dropped.
 */
export function closeOpenMarkers(text) {
  if (!text || isCodeBlock(text)) return text;
  let out = hideUnfinishedLink(text);
  const open = findOpenMarkers(out);
  // Drop a dangling opener at the very end ("Hello **"): there is nothing to emphasise yet.
  while (open.length && out.slice(open[open.length - 1].at + open[open.length - 1].marker.length).trim() === "") {
    out = out.slice(0, open.pop().at);
  }
  const trailingSpace = out.match(/\s*$/)[0];
  let body = out.slice(0, out.length - trailingSpace.length);
  for (let i = open.length - 1; i >= 0; i -= 1) body += open[i].marker;
  return body;
}

/** Scan once, skipping inline code, and return the unmatched openers in source order. */
function findOpenMarkers(text) {
  const stack = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === "\\") {
      i += 2;
      continue;
    }
    if (ch === "`") {
      const run = text.slice(i).match(/^`+/)[0];
      const close = text.indexOf(run, i + run.length);
      if (close === -1) {
        stack.push({ marker: run, at: i });
        return stack; // the rest is code: nothing in it counts
      }
      i = close + run.length;
      continue;
    }
    const run = emphasisRunAt(text, i);
    if (run.marker) toggle(stack, run.marker, i);
    i += run.length;
  }
  return stack;
}

/** The emphasis marker starting at i (if any) and how many characters to skip. */
function emphasisRunAt(text, i) {
  if (text.startsWith("~~", i)) return { marker: "~~", length: 2 };
  if (text[i] !== "*") return { marker: null, length: 1 };
  const run = text.slice(i).match(/^\*+/)[0];
  const before = i === 0 ? "\n" : text[i - 1];
  const after = text[i + run.length] ?? "";
  // A bullet ("* item" at a line start) or a lone "a * b" is not emphasis; nor is "****".
  const spaced = /\s/.test(before) && after !== "" && /\s/.test(after);
  if (spaced || run.length > 3) return { marker: null, length: run.length };
  return { marker: run, length: run.length };
}

function toggle(stack, marker, at) {
  if (marker === "***") {
    // strong+em: treat as the two markers it is made of.
    toggle(stack, "**", at);
    toggle(stack, "*", at + 2);
    return;
  }
  const idx = findLastIndex(stack, (m) => m.marker === marker);
  if (idx === -1) stack.push({ marker, at });
  else stack.splice(idx, 1);
}

function findLastIndex(list, predicate) {
  for (let i = list.length - 1; i >= 0; i -= 1) if (predicate(list[i])) return i;
  return -1;
}

/** "[text](http://exa" at the end: show just "text" until the link is complete. */
function hideUnfinishedLink(text) {
  return text.replace(/(!?)\[([^\]\n]*)\]\([^)\s]*$/, (_m, bang, label) => (bang ? "" : label));
}
