// The browser's SSE parser against third-party conformance cases (eventsource-parser,
// web-platform-tests, fetch-event-source), whole chunks and one byte at a time. The cases and
// their runner are a copy of ../shared/sse-conformance (see its README here), so CI runs them.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const runner = join(here, "sse-conformance", "run.mjs");
const parser = join(here, "..", "..", "static", "chat", "js", "sse.js");

for (const mode of [[], ["--bytewise"]]) {
  test(`every conformance case passes ${mode.length ? "fed byte by byte" : "in whole chunks"}`, () => {
    let output;
    try {
      output = execFileSync(process.execPath, [runner, parser, ...mode], { encoding: "utf8" });
    } catch (error) {
      assert.fail(`conformance failures:\n${error.stdout}`);
    }
    const summary = output.trim().split("\n").at(-1);
    assert.match(summary, /^\d+ passed, 0 failed$/);
    assert.ok(Number(summary.split(" ")[0]) >= 121, summary); // no case went missing
  });
}
