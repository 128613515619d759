// A small, exact Server-Sent Events parser, modelled on rexxars/eventsource-parser and the
// WHATWG "event stream interpretation" rules. It knows nothing about fetch or reconnecting.
//
//   const parser = createParser({ onEvent, onRetry, onComment, onId });
//   parser.feed(textChunk);  // any chunking: partial lines, CRLF split across chunks, ...
//   parser.reset();          // forget partial state (e.g. before a reconnect)
//
// onEvent({ id, event, data }): `id` is the id field of this event (undefined if it had none),
// `event` defaults to "message", `data` is the data lines joined with "\n".
// onId(id): a block with an id field was dispatched, with data or without: the spec's "last
// event ID" is set either way, so a reconnect must send it even when no event carried it.

const BOM = "\uFEFF";

/** Create a parser whose state lives in this closure. */
export function createParser({ onEvent = noop, onRetry = noop, onComment, onId = noop } = {}) {
  let pending = ""; // text after the last line terminator seen
  let skipLeadingLF = false; // last chunk ended in "\r": a "\n" opening the next one belongs to it
  let firstChunk = true;
  let event = emptyEvent();

  function feed(chunk) {
    if (!chunk) return;
    let text = chunk;
    if (firstChunk) {
      firstChunk = false;
      if (text.startsWith(BOM)) text = text.slice(1);
    }
    if (skipLeadingLF && text.startsWith("\n")) text = text.slice(1);
    skipLeadingLF = false;
    const lines = (pending + text).split(/\r\n|\r|\n/);
    // The last piece has no terminator yet, unless the text ended exactly on one.
    pending = lines.pop();
    if (text.endsWith("\r")) skipLeadingLF = true;
    for (const line of lines) processLine(line);
  }

  function processLine(line) {
    if (line === "") {
      dispatch();
      return;
    }
    if (line.startsWith(":")) {
      if (onComment) onComment(line.slice(line.startsWith(": ") ? 2 : 1));
      return;
    }
    const colon = line.indexOf(":");
    if (colon === -1) {
      processField(line, "");
      return;
    }
    const value = line.slice(colon + 1);
    processField(line.slice(0, colon), value.startsWith(" ") ? value.slice(1) : value);
  }

  function processField(field, value) {
    switch (field) {
      case "event":
        event.event = value;
        break;
      case "data":
        event.data.push(value);
        break;
      case "id":
        // An id containing NUL is ignored (spec); an empty id is a valid reset to "".
        if (!value.includes("\0")) event.id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) onRetry(parseInt(value, 10));
        break;
      default:
        // Unknown fields are ignored.
        break;
    }
  }

  function dispatch() {
    if (event.id !== undefined) onId(event.id);
    // Only events that had at least one data line are dispatched; the rest are dropped.
    if (event.data.length > 0) {
      onEvent({ id: event.id, event: event.event || "message", data: event.data.join("\n") });
    }
    event = emptyEvent();
  }

  /** Forget partial state. With {consume: true} the unterminated last line is processed first. */
  function reset({ consume = false } = {}) {
    if (consume && pending) processLine(pending);
    pending = "";
    skipLeadingLF = false;
    firstChunk = true;
    event = emptyEvent();
  }

  return { feed, reset };
}

/**
 * Wrap a parser so it can be fed raw bytes (Uint8Array chunks from response.body).
 * TextDecoder in streaming mode keeps a multi-byte UTF-8 character that is split across chunks.
 * ignoreBOM keeps a leading BOM in the text so that the parser strips exactly one (the spec's
 * UTF-8 decode does): a second U+FEFF is then part of the first field's name, as in browsers.
 */
export function createByteFeeder(parser) {
  const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  return {
    push(bytes) {
      parser.feed(decoder.decode(bytes, { stream: true }));
    },
    end() {
      parser.feed(decoder.decode());
    },
  };
}

function emptyEvent() {
  return { id: undefined, event: "", data: [] };
}

function noop() {}
