// Pure helpers for streaming Markdown (no DOM; unit-tested under Node).
//
// splitTail(lex, tail, final) cuts the not-yet-finished part of a growing Markdown source into
// finished top-level blocks and the one block still being written. A block is finished once a
// later non-blank block has begun (marked's lexer decides where blocks end), or, for a fenced
// code block, once its closing fence line has ended: nothing after it can change it. So the
// finished blocks' DOM can be kept and only the last block re-renders per frame.
// createBlockSplitter(lex) does the same for a whole source given again on each call.
//
// createOpenFence(live) follows a code fence that is still open: given only the text appended
// since, it says what to append to the <code> text and what its short tail now is, exactly as
// marked would render the whole block, so a long fence costs O(new text) per frame, not O(fence).
//
// closeOpenMarkers(text) makes the unfinished block render cleanly mid-stream: it closes an open
// inline code span, ** / * / ~~ emphasis, and hides a link whose target is still arriving.

/**
 * lex(text) -> [{type, raw}] (marked.lexer). Returns {blocks, consumed, live}: `blocks` are the
 * raw texts of the blocks finished in `tail`, `consumed` how many characters of `tail` they
 * (and the blank space between them) take, `live` the raw text of the unfinished last block
 * ("" if none).
 */
export function splitTail(lex, tail, final = false) {
  const tokens = lex(tail);
  const exact = exactTokens(tokens, tail);
  if (exact < tokens.length && final) {
    // The lexer dropped or rewrote text (e.g. a link definition): render it all as one.
    return { blocks: tail.trim() ? [tail] : [], consumed: tail.length, live: "" };
  }
  // Mid-stream, offsets are trusted up to the first rewritten token ("- " lexes as "-\n").
  let cut = final ? tokens.length : Math.min(lastContentIndex(tokens), exact);
  if (!final && cut < exact && isFinishedFence(tokens[cut].raw, cut < tokens.length - 1)) cut += 1;
  const blocks = [];
  let consumed = 0;
  for (let i = 0; i < cut; i += 1) {
    consumed += tokens[i].raw.length;
    if (tokens[i].type !== "space") blocks.push(tokens[i].raw);
  }
  const live = tail.slice(consumed);
  return { blocks, consumed, live: live.trim() ? live : "" };
}

/**
 * lex(text) -> [{type, raw}] (marked.lexer); update(source, final) -> {blocks, live}:
 * `blocks` are the raw texts of blocks newly finished since the last call, `live` is the raw
 * text of the unfinished last block ("" if none). Only the unfinished tail is lexed each time.
 */
export function createBlockSplitter(lex) {
  let stableEnd = 0; // source offset up to which blocks are finished and handed out
  let lastSource = "";

  function update(source, final = false) {
    if (!source.startsWith(lastSource.slice(0, stableEnd))) stableEnd = 0; // source was replaced
    lastSource = source;
    const { blocks, consumed, live } = splitTail(lex, source.slice(stableEnd), final);
    stableEnd += consumed;
    return { blocks, live };
  }

  function reset() {
    stableEnd = 0;
    lastSource = "";
  }

  return { update, reset };
}

/** How many leading tokens have their raw text exactly where it is in `text`. */
function exactTokens(tokens, text) {
  let at = 0;
  for (let i = 0; i < tokens.length; i += 1) {
    if (!text.startsWith(tokens[i].raw, at)) return i;
    at += tokens[i].raw.length;
  }
  return at === text.length ? tokens.length : Math.max(0, tokens.length - 1);
}

/** Index of the last token that is not blank space (tokens.length if there is none). */
function lastContentIndex(tokens) {
  for (let i = tokens.length - 1; i >= 0; i -= 1) {
    if (tokens[i].type !== "space") return i;
  }
  return tokens.length;
}

// ---------------------------------------------------------------- open code fences
//
// marked 18's fence rule: an opening line of up to 3 spaces, a run of 3+ backticks (no backtick
// in the info string) or tildes; the block ends at the first later line of up to 3 spaces, the
// same run (more of the same character allowed) and only spaces, or at the end of the source.
// Its text is every content line with as much leading whitespace removed as the opening fence
// had (backtick fences only), then rendered with one newline at the end (two if it ended in a
// blank line). createOpenFence reproduces exactly that, one appended piece at a time.

const FENCE_OPENER = /^( {0,3})(`{3,}|~{3,})([^\n]*)\n/;

/** The opening line of a fence at the start of `raw` ({fenceChar, runLength, indent, length}) or null. */
export function fenceOpener(raw) {
  const match = FENCE_OPENER.exec(raw);
  if (!match) return null;
  const [line, spaces, run, info] = match;
  if (run[0] === "`" && info.includes("`")) return null; // "```a`b" is inline code, not a fence
  return {
    fenceChar: run[0],
    runLength: run.length,
    // marked removes this much leading whitespace from each content line (backtick fences only)
    indent: run[0] === "`" ? spaces.length : 0,
    length: line.length,
  };
}

/** A closing-line matcher for `opener`, fed one character at a time; null state = cannot close. */
function closerStep(opener, state, ch) {
  // state: {phase: 0 leading spaces | 1 the run | 2 more run chars | 3 trailing spaces, count}
  const { phase, count } = state;
  if (phase === 0) {
    if (ch === " ") return count < 3 ? { phase: 0, count: count + 1 } : null;
    if (ch === opener.fenceChar) return opener.runLength === 1 ? { phase: 2, count: 0 } : { phase: 1, count: 1 };
    return null;
  }
  if (phase === 1) {
    if (ch !== opener.fenceChar) return null;
    return count + 1 === opener.runLength ? { phase: 2, count: 0 } : { phase: 1, count: count + 1 };
  }
  if (phase === 2) {
    if (ch === opener.fenceChar) return state;
    return ch === " " ? { phase: 3, count: 0 } : null;
  }
  return ch === " " ? state : null;
}

const LINE_START = { phase: 0, count: 0 };
const closes = (state) => state !== null && state.phase >= 2;

/** A fence whose closing line has ended (`followed`: more tokens come after it): it is final. */
function isFinishedFence(raw, followed) {
  const opener = fenceOpener(raw);
  if (!opener) return false;
  const lines = raw.slice(opener.length).split("\n");
  for (let i = 0; i < lines.length; i += 1) {
    let state = LINE_START;
    for (let j = 0; j < lines[i].length && state !== null; j += 1) state = closerStep(opener, state, lines[i][j]);
    if (closes(state)) return i < lines.length - 1 || followed;
  }
  return false;
}

/**
 * Follow an open fence. `live` is the block's whole raw text so far (it must start with a
 * complete opening line). Returns null when `live` is not an open fence, else
 * {text, tail, push(more)}: `text` is the code text so far minus `tail`, its last few characters
 * (the trailing newlines, which change as the block grows). push(more) returns the text to
 * append and the new tail ({append, tail}), or null once `more` closes the fence (then the
 * caller renders the block afresh).
 */
export function createOpenFence(live) {
  const opener = fenceOpener(live);
  if (!opener) return null;
  let committed = ""; // rendered code text, never ending in a newline
  let any = false; // any content at all (an empty fence renders no newline)
  let newlines = 0; // newlines after `committed`, not yet shown as such
  let held = ""; // the current line's leading whitespace while the indent removal is undecided
  let stable = false; // the current line's rendering can only grow from here
  let closer = LINE_START; // whether the current line could still be a closing fence

  function emit(piece) {
    if (!piece) return "";
    const out = "\n".repeat(newlines) + piece;
    newlines = 0;
    committed += out;
    return out;
  }

  /** Add text inside the current line (no newline in it). */
  function addToLine(segment) {
    for (let i = 0; i < segment.length && closer !== null; i += 1) closer = closerStep(opener, closer, segment[i]);
    if (stable) return emit(segment);
    if (!segment) return "";
    const line = held + segment;
    const space = /^\s*/.exec(line)[0].length;
    if (space === line.length && space < opener.indent) {
      held = line; // all whitespace, shorter than the indent: renders as nothing so far
      return "";
    }
    held = "";
    stable = true;
    return emit(line.slice(Math.min(space, opener.indent)));
  }

  function push(more) {
    if (!more) return { append: "", tail: tail() };
    any = true;
    let append = "";
    const lines = more.split("\n");
    for (let i = 0; i < lines.length; i += 1) {
      if (i > 0) {
        // A line ended: was it the closing fence?
        if (closes(closer)) return null;
        newlines += 1;
        held = "";
        stable = false;
        closer = LINE_START;
      }
      append += addToLine(lines[i]);
    }
    if (closes(closer)) return null; // a closing fence at the very end counts too
    return { append, tail: tail() };
  }

  function tail() {
    if (!any) return "";
    // marked drops the source's last newline, then renders one newline more than the text
    // ends with (at least one): "a" and "a\n" show "a\n", "a\n\n" shows "a\n\n". A current
    // line of indent-only whitespace renders as nothing but still holds its newline back.
    const lineEmpty = held === "" && !stable;
    const kept = lineEmpty && newlines > 0 ? newlines - 1 : newlines;
    return "\n".repeat(kept + 1);
  }

  const first = push(live.slice(opener.length));
  if (first === null) return null;
  return {
    get text() {
      return committed;
    },
    get tail() {
      return tail();
    },
    push,
  };
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
