// SSE conformance harness: runs third-party test vectors (*.json beside this file) against a parser module
// exporting createParser({onEvent, onRetry, onComment}) -> {feed, reset} and createByteFeeder(parser).
//
//   node run.mjs [path/to/sse.js] [--bytewise] [--only SUBSTRING] [--verbose]
//
// --bytewise: also re-run every case with each chunk's UTF-8 bytes pushed one byte at a time
//             through createByteFeeder (cases marked big are skipped there); reported separately.
// Prints one line per failing case, then `N passed, M failed`. Exit status 1 if any failed.
//
// Normalizations (see README.md): an expected `event: null` (eventsource-parser's undefined) means
// "message"; an expected `id: null` means the event had no id field (undefined); `lastEventId` is
// derived the way EventSource does it: the last id field of a dispatched block (reported through
// onId, data or not, where the parser has it; else through the events), kept across events and
// reconnects; onError / maxBufferSize checks have no counterpart and are dropped.
// (chatsite's copy: the shared runner did not pass onId, so the cases marked
// "onId-as-lastEventId" could not pass with any parser.)
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const opt = (f) => (args.includes(f) ? args[args.indexOf(f) + 1] : undefined);
const positional = args.filter((a, i) => !a.startsWith("--") && !(i > 0 && args[i - 1] === "--only"));
const modulePath = resolve(positional[0] ?? "static/chat/js/sse.js");
const { createParser, createByteFeeder } = await import(pathToFileURL(modulePath).href);

const encoder = new TextEncoder();
const part = (p) => (typeof p === "string" ? p : p.repeat.repeat(p.times));
const textOf = (feed) => (Array.isArray(feed) ? feed.map(part).join("") : feed);
function bytesOf(parts) {
  const chunks = parts.map((p) => (p.hex !== undefined ? Buffer.from(p.hex, "hex") : encoder.encode(part(p))));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Run one case; returns the observed log and any checkpoint failures. */
function execute(kase, bytewise) {
  const log = [];
  const problems = [];
  let lastEventId = "";
  let parser;
  let feeder;
  const connect = () => {
    const callbacks = {
      onEvent: (e) => {
        if (e.id !== undefined) lastEventId = e.id;
        log.push({ kind: "event", id: e.id, event: e.event, data: e.data, lastEventId });
      },
      onRetry: (ms) => log.push({ kind: "retry", value: ms }),
      onId: (id) => {
        lastEventId = id;
      },
    };
    if (kase.callbacks?.onComment !== false) callbacks.onComment = (c) => log.push({ kind: "comment", value: c });
    parser = createParser(callbacks);
    feeder = createByteFeeder(parser);
  };
  const useBytes = bytewise || kase.mode === "bytes";
  const send = (bytes) => {
    if (bytewise) for (let i = 0; i < bytes.length; i++) feeder.push(bytes.subarray(i, i + 1));
    else feeder.push(bytes);
  };
  connect();
  for (const op of kase.ops) {
    const times = op.repeat ?? 1;
    if ("feed" in op) {
      const text = textOf(op.feed);
      for (let n = 0; n < times; n++) (useBytes ? send(encoder.encode(text)) : parser.feed(text));
    } else if ("push" in op) {
      const bytes = bytesOf(op.push);
      for (let n = 0; n < times; n++) send(bytes);
    } else if ("reset" in op) {
      if (useBytes) feeder.end();
      parser.reset(op.reset);
      feeder = createByteFeeder(parser);
    } else if ("reconnect" in op) {
      if (useBytes) feeder.end(); // the connection's stream ends; a new one gets a fresh parser (as stream.js does)
      connect();
    } else if ("check" in op) {
      const c = op.check;
      if ("lastEventId" in c && c.lastEventId !== lastEventId) {
        problems.push(`after op ${kase.ops.indexOf(op)}: lastEventId ${show(lastEventId)}, expected ${show(c.lastEventId)}`);
      }
      const count = log.filter((x) => x.kind === "event").length;
      if ("eventCount" in c && c.eventCount !== count) {
        problems.push(`after op ${kase.ops.indexOf(op)}: ${count} events, expected ${c.eventCount}`);
      }
    } else throw new Error(`unknown op in ${kase.name}: ${JSON.stringify(op)}`);
  }
  if (useBytes) feeder.end();
  return { log, problems, lastEventId };
}

function show(v) {
  if (v === undefined) return "undefined";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 60)}…(${v.length} chars)` : s;
}

function compare(kase, { log, problems, lastEventId }) {
  const exp = kase.expect;
  const events = log.filter((x) => x.kind === "event");
  const diffs = [...problems];
  if (exp.events) {
    if (events.length !== exp.events.length) {
      diffs.push(`${events.length} events, expected ${exp.events.length} (got data ${show(events.map((e) => e.data))})`);
    }
    exp.events.forEach((want, i) => {
      const got = events[i];
      if (!got) return;
      const bad = [];
      if ("data" in want && got.data !== want.data) bad.push(`data ${show(got.data)} != ${show(want.data)}`);
      if ("dataPattern" in want && !new RegExp(want.dataPattern).test(got.data)) bad.push(`data ${show(got.data)} !~ /${want.dataPattern}/`);
      if ("dataLength" in want && got.data.length !== want.dataLength) bad.push(`data length ${got.data.length} != ${want.dataLength}`);
      if ("dataSha256" in want) {
        const h = createHash("sha256").update(got.data, "utf8").digest("hex");
        if (h !== want.dataSha256) bad.push(`data sha256 ${h.slice(0, 12)}… != ${want.dataSha256.slice(0, 12)}…`);
      }
      if ("event" in want && got.event !== (want.event ?? "message")) bad.push(`event ${show(got.event)} != ${show(want.event ?? "message")}`);
      if ("id" in want && got.id !== (want.id ?? undefined)) bad.push(`id ${show(got.id)} != ${show(want.id ?? undefined)}`);
      if ("lastEventId" in want && got.lastEventId !== want.lastEventId) bad.push(`lastEventId ${show(got.lastEventId)} != ${show(want.lastEventId)}`);
      if (bad.length) diffs.push(`event ${i}: ${bad.join(", ")}`);
    });
  }
  const values = (kind) => log.filter((x) => x.kind === kind).map((x) => x.value);
  if (exp.retries && show(values("retry")) !== show(exp.retries)) diffs.push(`retries ${show(values("retry"))}, expected ${show(exp.retries)}`);
  if (exp.comments && show(values("comment")) !== show(exp.comments)) diffs.push(`comments ${show(values("comment"))}, expected ${show(exp.comments)}`);
  if (exp.order) {
    const kinds = new Set(exp.order);
    const got = log.filter((x) => kinds.has(x.kind)).map((x) => x.kind);
    if (got.join() !== exp.order.join()) diffs.push(`callback order ${got.join(",")}, expected ${exp.order.join(",")}`);
  }
  if ("lastEventId" in exp && lastEventId !== exp.lastEventId) diffs.push(`final lastEventId ${show(lastEventId)}, expected ${show(exp.lastEventId)}`);
  return diffs;
}

const suites = readdirSync(HERE)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(HERE, f), "utf8")));
const only = opt("--only");
const passes = flag("--bytewise") ? [false, true] : [false];
const totals = { passed: 0, failed: 0, skipped: 0 };
for (const bytewise of passes) {
  for (const suite of suites) {
    let p = 0;
    let f = 0;
    for (const kase of suite.cases) {
      if (only && !kase.name.includes(only)) continue;
      if (bytewise && kase.big) {
        totals.skipped++;
        continue;
      }
      let diffs;
      try {
        diffs = compare(kase, execute(kase, bytewise));
      } catch (err) {
        diffs = [`threw ${err?.stack ?? err}`];
      }
      if (diffs.length) {
        f++;
        console.log(`FAIL ${bytewise ? "[bytewise] " : ""}${suite.source} :: ${kase.name} :: ${diffs.join("; ")}`);
      } else {
        p++;
        if (flag("--verbose")) console.log(`ok   ${bytewise ? "[bytewise] " : ""}${suite.source} :: ${kase.name}`);
      }
    }
    console.log(`# ${bytewise ? "[bytewise] " : ""}${suite.source}: ${p} passed, ${f} failed, ${suite.notPorted?.length ?? 0} not ported`);
    totals.passed += p;
    totals.failed += f;
  }
}
if (totals.skipped) console.log(`# ${totals.skipped} big cases skipped in --bytewise`);
console.log(`${totals.passed} passed, ${totals.failed} failed`);
process.exitCode = totals.failed ? 1 : 0;
