// The browser's SSE parser (static/chat/js/sse.js) as a filter, for tests/test_properties.py.
// Each stdin line is one stream: {"chunks": ["<base64>", ...]}. The bytes go through the same
// createByteFeeder + createParser pair the page uses, chunk by chunk; each stdout line is what
// came out: {"events": [{id, event, data}], "retries": [ms], "comments": [text]}.
// One process serves many streams, so a property test pays Node's start-up once.
import { createInterface } from "node:readline";
import { createByteFeeder, createParser } from "../../static/chat/js/sse.js";

function decode(chunks) {
  const out = { events: [], retries: [], comments: [] };
  const feeder = createByteFeeder(
    createParser({
      onEvent: (e) => out.events.push({ id: e.id ?? null, event: e.event, data: e.data }),
      onRetry: (ms) => out.retries.push(ms),
      onComment: (text) => out.comments.push(text),
    }),
  );
  for (const chunk of chunks) feeder.push(new Uint8Array(Buffer.from(chunk, "base64")));
  feeder.end();
  return out;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line) process.stdout.write(JSON.stringify(decode(JSON.parse(line).chunks)) + "\n");
}
