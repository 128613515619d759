// Unit tests for the highlighting helpers (static/chat/js/highlight.js), using the vendored highlight.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { highlightedHtml, knownLanguage, MAX_HIGHLIGHT_CHARS } from "../../static/chat/js/highlight.js";

/** The text a browser shows for highlight.js HTML (spans dropped, entities decoded). */
function shownText(html) {
  return html
    .replace(/<\/?span[^>]*>/g, "")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&quot;", '"')
    .replaceAll("&#x27;", "'")
    .replaceAll("&amp;", "&");
}

test("the language comes from marked's language- class, aliases included", () => {
  assert.equal(knownLanguage("language-python"), "python");
  assert.equal(knownLanguage("hljs language-js"), "js");
  assert.equal(knownLanguage("language-no-such-language"), null);
  assert.equal(knownLanguage(""), null);
  assert.equal(knownLanguage(undefined), null);
});

test("code is wrapped in spans and its text is unchanged", () => {
  const code = "def f(x):\n    return x * 2  # twice\n";
  const html = highlightedHtml(code, "python");
  assert.match(html, /<span class="hljs-keyword">def<\/span>/);
  assert.match(html, /<span class="hljs-comment"># twice<\/span>/);
  assert.equal(shownText(html), code);
});

test("markup in the code comes out escaped, never as tags", () => {
  const code = `<img src=x onerror="alert(1)"><script>alert(2)</script> & "q" 'a'`;
  for (const language of ["xml", "javascript", "python", "plaintext"]) {
    const html = highlightedHtml(code, language);
    assert.doesNotMatch(html, /<(?!\/?span[ >])/, `${language}: only span tags`);
    assert.equal(shownText(html), code, language);
  }
});

test("unknown languages, no language and very long blocks stay plain", () => {
  assert.equal(highlightedHtml("x = 1", "no-such-language"), null);
  assert.equal(highlightedHtml("x = 1", null), null);
  assert.equal(highlightedHtml("x = 1\n".repeat(MAX_HIGHLIGHT_CHARS), "python"), null);
  assert.notEqual(highlightedHtml("x = 1\n", "python"), null);
});
