// Unit tests for the streaming Markdown helpers (static/chat/js/blocks.js), using the vendored marked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { closeOpenMarkers, createBlockSplitter, isCodeBlock } from "../../static/chat/js/blocks.js";
import { marked } from "../../static/vendor/marked/marked.esm.js";

const lex = (text) => marked.lexer(text, { gfm: true });

/** Feed `source` in pieces; return every finished block in order and the final live block. */
function stream(source, step) {
  const splitter = createBlockSplitter(lex);
  const blocks = [];
  let live = "";
  for (let end = step; end < source.length + step; end += step) {
    const result = splitter.update(source.slice(0, Math.min(end, source.length)));
    blocks.push(...result.blocks);
    live = result.live;
  }
  return { blocks, live, final: splitter.update(source, true) };
}

const DOC = [
  "# Title",
  "",
  "A paragraph with **bold** and `code`.",
  "",
  "- one",
  "- two",
  "",
  "```python",
  "def f():",
  "",
  "    return 1",
  "```",
  "",
  "> quoted",
  "",
  "| a | b |",
  "|---|---|",
  "| 1 | 2 |",
  "",
  "The end.",
].join("\n");

test("finished blocks plus the live block rebuild the source, for any step size", () => {
  for (const step of [1, 2, 3, 7, 13, 50, DOC.length]) {
    const { blocks, live, final } = stream(DOC, step);
    const all = [...blocks, ...final.blocks];
    assert.equal(live, "The end.", `step ${step}`);
    assert.deepEqual(
      all.map((b) => b.trim()),
      ["# Title", "A paragraph with **bold** and `code`.", "- one\n- two", "```python\ndef f():\n\n    return 1\n```",
        "> quoted", "| a | b |\n|---|---|\n| 1 | 2 |", "The end."],
      `step ${step}`,
    );
  }
});

test("a block is only finished once a later block has begun", () => {
  const splitter = createBlockSplitter(lex);
  assert.deepEqual(splitter.update("Para one"), { blocks: [], live: "Para one" });
  assert.deepEqual(splitter.update("Para one\n\n"), { blocks: [], live: "Para one\n\n" });
  assert.deepEqual(splitter.update("Para one\n\nPara"), { blocks: ["Para one"], live: "Para" });
});

test("an unclosed code fence stays one live block, blank lines included", () => {
  const splitter = createBlockSplitter(lex);
  const result = splitter.update("Intro\n\n```js\nconst a = 1;\n\nconst b = 2;\n");
  assert.deepEqual(result.blocks, ["Intro"]);
  assert.equal(result.live, "```js\nconst a = 1;\n\nconst b = 2;\n");
});

test("a list separated by blank lines is not cut while it may continue", () => {
  const splitter = createBlockSplitter(lex);
  assert.deepEqual(splitter.update("- a\n\n").blocks, []);
  const next = splitter.update("- a\n\n- b");
  assert.deepEqual(next.blocks, []);
  assert.match(next.live, /- a\n\n- b/);
});

test("only the tail after finished blocks is lexed", () => {
  const seen = [];
  const splitter = createBlockSplitter((text) => {
    seen.push(text);
    return lex(text);
  });
  splitter.update("First.\n\nSecond");
  splitter.update("First.\n\nSecond and more");
  assert.equal(seen[1], "Second and more");
});

test("a replaced source starts over", () => {
  const splitter = createBlockSplitter(lex);
  splitter.update("Aaa\n\nBbb");
  assert.deepEqual(splitter.update("Xyz\n\nQ"), { blocks: ["Xyz"], live: "Q" });
});

test("closeOpenMarkers closes emphasis, strong, strike and inline code", () => {
  assert.equal(closeOpenMarkers("Hello **wor"), "Hello **wor**");
  assert.equal(closeOpenMarkers("an *ital"), "an *ital*");
  assert.equal(closeOpenMarkers("**bold *both"), "**bold *both***");
  assert.equal(closeOpenMarkers("~~gone"), "~~gone~~");
  assert.equal(closeOpenMarkers("use `npm i"), "use `npm i`");
  assert.equal(closeOpenMarkers("`a*b` and *c"), "`a*b` and *c*");
});

test("closeOpenMarkers leaves balanced and non-emphasis text alone", () => {
  for (const text of ["**done** and *done*", "2 * 3 = 6", "* item\n* item", "a \\*literal", "snake_case_name"]) {
    assert.equal(closeOpenMarkers(text), text);
  }
});

test("closeOpenMarkers drops a dangling opener with nothing after it", () => {
  assert.equal(closeOpenMarkers("Hello **"), "Hello");
  assert.equal(closeOpenMarkers("Hello `"), "Hello");
});

test("closeOpenMarkers hides a link whose target is still arriving", () => {
  assert.equal(closeOpenMarkers("see [the docs](https://exa"), "see the docs");
  assert.equal(closeOpenMarkers("see [the docs](https://example.com)"), "see [the docs](https://example.com)");
});

test("closeOpenMarkers does not touch code blocks", () => {
  assert.ok(isCodeBlock("```py\nx = '**'"));
  assert.equal(closeOpenMarkers("```py\nx = '**'"), "```py\nx = '**'");
  assert.equal(closeOpenMarkers("    indented *code"), "    indented *code");
});

test("the vendored marked renders an unclosed fence as code", () => {
  assert.match(marked.parse("```py\nprint(1)"), /<pre><code class="language-py">print\(1\)/);
});
