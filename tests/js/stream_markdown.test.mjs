// Streaming Markdown stays exact while bounded (static/chat/js/blocks.js, with the vendored marked):
// an open code fence is extended from the appended text alone, and a closed one is finished at
// once. Long fences and long paragraphs are streamed in random chunkings; at every chunk the
// incremental result is compared with marked's one-shot output for the same prefix. (The DOM
// side of the same comparison, with DOMPurify, runs in Chromium: tests/browser/test_markdown_stream.py.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createBlockSplitter, createOpenFence, fenceOpener, splitTail } from "../../static/chat/js/blocks.js";
import { marked } from "../../static/vendor/marked/marked.esm.js";

const lex = (text) => marked.lexer(text, { gfm: true });

/** A small seeded PRNG (mulberry32): the same chunkings on every run. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cut `text` into pieces of 1..max characters. */
function chunks(text, rand, max) {
  const out = [];
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(rand() * max);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'" };

/** The text of the (first) code block in marked's HTML for `source`, entities decoded. */
function markedCodeText(source) {
  const match = /<pre><code[^>]*>([\s\S]*?)<\/code><\/pre>/.exec(marked.parse(source, { gfm: true }));
  assert.ok(match, `no code block in ${JSON.stringify(source.slice(0, 60))}`);
  return match[1].replace(/&(amp|lt|gt|quot|#39);/g, (m) => ENTITIES[m]);
}

/** Stream `body` into a fence opened by `openLine`; compare with marked after every piece. */
function checkFence(openLine, body, seed, max) {
  const rand = random(seed);
  let source = openLine;
  let fence = createOpenFence(source);
  assert.ok(fence, `not an open fence: ${JSON.stringify(openLine)}`);
  let shown = fence.text;
  let tail = fence.tail;
  let appended = 0; // pieces taken by push(), not by a rebuild
  for (const piece of chunks(body, rand, max)) {
    source += piece;
    const step = fence.push(piece);
    if (step === null) {
      // The fence closed: the caller renders afresh; a new open fence can only be another block.
      return { closedAt: source.length, appended };
    }
    shown += step.append;
    tail = step.tail;
    appended += 1;
    assert.equal(shown + tail, markedCodeText(source), `after ${JSON.stringify(source.slice(-40))}`);
  }
  return { closedAt: null, appended, text: shown + tail };
}

function codeLines(n, rand) {
  const words = ["const", "x", "=", "'**'", "<div>", "&amp;", "\t", "  ", "`", "~", "_a_", "[l](u)", "\u00a0", "é", "💡"];
  const lines = [];
  for (let i = 0; i < n; i += 1) {
    const width = Math.floor(rand() * 8);
    const indent = " ".repeat(Math.floor(rand() * 6));
    let line = indent;
    for (let w = 0; w < width; w += 1) line += `${words[Math.floor(rand() * words.length)]} `;
    lines.push(rand() < 0.1 ? "" : line);
  }
  return lines.join("\n");
}

test("an open fence grows by appended text exactly as marked renders it, for any chunking", () => {
  const openers = ["```js\n", "```\n", "~~~\n", "````python extra\n", "  ```py\n", " ```\n", "   ~~~ x\n"];
  let seed = 1;
  for (const openLine of openers) {
    for (const max of [1, 3, 17, 200]) {
      const rand = random(seed);
      const body = codeLines(120, rand) + "\n\n\n  \n";
      const result = checkFence(openLine, body, seed, max);
      seed += 1;
      assert.equal(result.closedAt, null, `${JSON.stringify(openLine)} closed early`);
      assert.ok(result.appended > 0);
    }
  }
});

test("a long fence is followed from its new text only (no re-parse of what was rendered)", () => {
  const rand = random(99);
  const body = codeLines(4000, rand);
  const fence = createOpenFence("```js\n");
  let total = "";
  for (const piece of chunks(body, rand, 40)) {
    const step = fence.push(piece);
    total += step.append;
    // Each step hands back at most the piece plus the newlines held before it.
    assert.ok(step.append.length <= piece.length + 3 + (step.append.match(/^\n*/)[0].length));
    assert.ok(step.tail.length <= 3 || /^\n+$/.test(step.tail));
  }
  const source = "```js\n" + body;
  assert.equal(total + fence.tail, markedCodeText(source));
});

test("the closing fence is recognised as marked does, split across pieces or not", () => {
  const cases = [
    ["```\ncode\n```", true],
    ["```\ncode\n   ```  ", true],
    ["```\ncode\n`````", true],
    ["```\ncode\n    ```", false], // four spaces: content
    ["```\ncode\n``", false], // shorter run: content (so far)
    ["```\ncode\n```x", false],
    ["```\ncode\n~~~", false], // the other character
    ["~~~~\ncode\n~~~", false], // shorter than the opener
    ["~~~~\ncode\n~~~~~ ", true],
    ["```\ncode\n```\t", false], // only spaces may follow
  ];
  for (const [source, closed] of cases) {
    const tokens = lex(source);
    const markedClosed = tokens.length > 0 && tokens[0].type === "code" && !markedCodeText(source).includes(source.split("\n").at(-1).trim() || "\u0000");
    assert.equal(markedClosed, closed, `marked's view of ${JSON.stringify(source)}`);
    for (let cut = "```\n".length; cut < source.length; cut += 1) {
      const fence = createOpenFence(source.slice(0, cut));
      if (fence === null) continue; // closed already at this point ("```\ncode\n``" + "`")
      const step = fence.push(source.slice(cut));
      assert.equal(step === null, closed, `${JSON.stringify(source)} cut at ${cut}`);
    }
  }
});

test("the opening line must be complete and a real fence", () => {
  assert.equal(createOpenFence("```js"), null); // the info string may still grow
  assert.equal(createOpenFence("```a`b\n"), null); // inline code, not a fence
  assert.equal(createOpenFence("    ```\n"), null); // indented code
  assert.equal(fenceOpener("  ```py\nx").indent, 2);
  assert.equal(fenceOpener("  ~~~py\nx").indent, 0); // marked compensates backtick fences only
});

/** Render like the page's Markdown view: each finished block on its own, then the live one. */
function renderBlocks(blocks, live) {
  return blocks.map((raw) => marked.parse(raw, { gfm: true })).join("") + (live ? marked.parse(live, { gfm: true }) : "");
}

const LONG_DOC = (() => {
  const rand = random(7);
  const sentence = () => {
    const words = ["the", "**stream**", "renders", "`code`", "*each*", "token", "[link](https://example.com)", "~~old~~", "once"];
    let out = "";
    for (let i = 0; i < 12; i += 1) out += `${words[Math.floor(rand() * words.length)]} `;
    return out.trim() + ".";
  };
  const parts = [];
  parts.push(Array.from({ length: 60 }, sentence).join(" ")); // one very long paragraph
  parts.push("```python\n" + codeLines(400, rand) + "\n```");
  parts.push(Array.from({ length: 40 }, sentence).join("\n")); // a long paragraph of many lines
  parts.push("~~~\n" + codeLines(300, rand) + "\n~~~~");
  parts.push("- " + Array.from({ length: 30 }, sentence).join("\n- "));
  parts.push("```\n" + codeLines(200, rand)); // open to the end
  return parts.join("\n\n");
})();

test("streamed in random chunks, blocks render as a one-shot render of the same prefix", () => {
  for (const [seed, max] of [[1, 9], [2, 60], [3, 400]]) {
    const rand = random(seed);
    const splitter = createBlockSplitter(lex);
    const blocks = [];
    let source = "";
    let step = 0;
    for (const piece of chunks(LONG_DOC, rand, max)) {
      source += piece;
      const result = splitter.update(source);
      blocks.push(...result.blocks);
      step += 1;
      if (step % 97 === 0) {
        // A fresh splitter on the same prefix: the one-shot render of what is on screen now.
        const fresh = createBlockSplitter(lex).update(source);
        assert.equal(renderBlocks(blocks, result.live), renderBlocks(fresh.blocks, fresh.live), `seed ${seed} at ${source.length}`);
      }
    }
    const last = splitter.update(source, true);
    blocks.push(...last.blocks);
    const oneShot = createBlockSplitter(lex).update(LONG_DOC, true);
    assert.equal(renderBlocks(blocks, ""), renderBlocks(oneShot.blocks, ""), `seed ${seed} final`);
  }
});

test("a fence is finished as soon as its closing line ends, not when the next block begins", () => {
  assert.deepEqual(splitTail(lex, "```js\nx\n```"), { blocks: [], consumed: 0, live: "```js\nx\n```" });
  const done = splitTail(lex, "```js\nx\n```\n");
  assert.deepEqual(done.blocks, ["```js\nx\n```\n"]);
  assert.equal(done.live, "");
  // Blank space after it stays unconsumed: "\n    y" could still become indented code.
  const spaced = splitTail(lex, "```js\nx\n```\n\n  ");
  assert.deepEqual(spaced.blocks, ["```js\nx\n```"]);
  assert.equal(spaced.consumed, "```js\nx\n```".length);
  const next = splitTail(lex, "\n\n      y\n");
  assert.equal(next.live.trim(), "y");
  assert.match(marked.parse(next.live), /<pre><code>/);
});
