// The lifecycle of running answers: follow one to its end, stop it, re-attach to it, keep
// reading it in the background after a switch. No DOM of its own: it drives the message view it
// is given and tells the page what changed through the callbacks below.
//
//   const answers = createAnswers({ ...callbacks });
//   answers.start({view, userView, request, prompt, conversationId}) -> Promise<{refused, error}>
//   answers.reattach({view, messageId, lastEventId, prompt, conversationId})
//   answers.stop()                     Stop button
//   answers.detach({keepReading})      the shown conversation goes away
//   answers.dropConversation(id)       the conversation was deleted: stop reading its answers
//   answers.offerRetry(view, prompt, message)
//   answers.isActive()                 an answer of the shown conversation is running
//   answers.follows(messageId)         this page reads that answer's stream (shown, stopping, background)
//   answers.settled()                  resolves once every stopped answer is stored (a new send waits)

import { ApiError, cancelMessage } from "./api.js";
import { ConnectionLost, followStream } from "./stream.js";

// Stop over the WebSocket: how long our stream may take to bring `done` before Stop falls back to
// the HTTP cancel (the server normally sends the tail and `done` within milliseconds).
export const SOCKET_STOP_WAIT_MS = 3000;

/**
 * @param {object} page what the page provides:
 *   setStreaming(streaming, {busy}) composer and list state while an answer runs;
 *   announce(text) status region; showBanner(text) and errorText(error) for failures;
 *   refreshConversations() after `done`; openConversation(id) to reload one;
 *   currentConversationId() the shown conversation; retry(prompt) sends a prompt again;
 *   sendCancel(messageId) -> bool: the cancel frame went out on the conversation's socket;
 *   accepted() the server took a new message (its `start` came).
 */
export function createAnswers(page) {
  let active = null; // the answer being streamed: {view, controller, messageId, lastEventId, prompt, ...}
  const background = new Set(); // answers of conversations switched away from, still read until `done`
  const stopping = new Map(); // answer -> promise that resolves once its end is stored

  /** Send a new message (`request` is its POST) and follow its answer to the end. */
  async function start({ view, userView, request, prompt, conversationId, messageId = null }) {
    // messageId: a Continue, whose stream goes on with the same message and brings no `start`.
    const answer = await runAnswer({ view, userView, request, prompt, conversationId, messageId });
    // refused: the POST got an API error before `start` (nothing stored) while still shown;
    // the page says why next to the composer (error: the ApiError).
    const refused = answer.failedBeforeStart && !answer.background;
    return { refused, error: refused ? answer.refusal : null };
  }

  /** Follow an answer that is still being written (after a reload or a switch back). */
  function reattach({ view, messageId, lastEventId, prompt, conversationId }) {
    // We read this answer in the background since switching away: this connection takes over.
    dropBackground((other) => other.messageId === messageId);
    runAnswer({ view, messageId, lastEventId, prompt, conversationId });
  }

  /** Follow one answer to its end, updating its view; returns the finished `active` record. */
  async function runAnswer({ view, request = null, messageId = null, lastEventId = 0, prompt = "", userView = null, conversationId }) {
    const answer = {
      view, userView, prompt, messageId, lastEventId, conversationId,
      controller: new AbortController(),
      stopping: false,
      done: false,
      failedBeforeStart: false,
      request,
      gotEvent: false,
    };
    // Resolves on `start`, or when this connection ends without one (Stop waits on it).
    answer.started = new Promise((resolve) => {
      answer.markStarted = resolve;
    });
    // Resolves when this connection is over (`done`, given up or aborted).
    answer.ended = new Promise((resolve) => {
      answer.markEnded = resolve;
    });
    if (messageId != null) answer.markStarted();
    active = answer;
    page.setStreaming(true);
    try {
      await followStream({
        request,
        messageId,
        lastEventId,
        signal: answer.controller.signal,
        onEvent: (event) => handleEvent(answer, event),
        onReconnect: () => page.announce("Connection lost, reconnecting…"),
      });
    } catch (error) {
      if (!answer.controller.signal.aborted) handleFailure(answer, error);
    } finally {
      answer.markStarted();
      answer.markEnded();
      background.delete(answer); // `done`, given up or aborted: nothing holds it any more
      if (active === answer && !answer.stopping) {
        active = null;
        page.setStreaming(false);
      }
    }
    return answer;
  }

  function handleEvent(answer, { type, id, data }) {
    answer.gotEvent = true;
    if (id != null) answer.lastEventId = id;
    if (answer.background) {
      handleBackgroundEvent(answer, type, data);
      return;
    }
    switch (type) {
      case "start":
        answer.messageId = data.message_id;
        answer.markStarted();
        answer.view.setId(data.message_id);
        if (answer.userView && data.user_message_id != null) answer.userView.setId(data.user_message_id);
        if (answer.userView) page.accepted?.();
        break;
      case "token":
        answer.view.appendToken(data.text);
        break;
      case "error":
        answer.error = data;
        break;
      case "done":
        finishAnswer(answer, data);
        break;
      default:
        break; // unknown events are ignored, as the protocol may grow
    }
  }

  /**
   * An answer of a conversation we switched away from: its view is gone (switching back renders
   * the conversation afresh from the API and re-attaches), so the text is dropped; we only keep
   * the connection (the server stops an answer nobody follows) and note the message id.
   */
  function handleBackgroundEvent(answer, type, data) {
    if (type === "start") {
      answer.messageId = data.message_id;
      answer.markStarted();
      // Switched back before `start`: if that conversation already re-attached to this answer,
      // the other connection follows it, so this one can go.
      if (active && active !== answer && active.messageId === answer.messageId) {
        dropBackground((other) => other === answer);
      }
    } else if (type === "done") {
      answer.done = true;
      background.delete(answer);
      page.refreshConversations(); // the title may have been set from the first message
    }
  }

  function finishAnswer(answer, done) {
    answer.done = true;
    answer.view.finish(done);
    if (answer.error || done.status === "error") {
      offerRetry(answer.view, answer.prompt, answer.error?.message || "The answer failed.");
    }
    page.announce(done.status === "cancelled" ? "Answer stopped" : done.status === "complete" ? "Answer complete" : "Answer ended");
    page.refreshConversations(); // the title may have been set from the first message
  }

  /** Error box with a Retry that sends the same prompt again (the failed answer stays as it is). */
  function offerRetry(view, prompt, message) {
    const action = prompt && { label: "Retry", run: () => !active && page.retry(prompt) };
    view.showError(message, action || null);
  }

  function handleFailure(answer, error) {
    if (answer.background) return; // nothing shows it; switching back re-attaches if it still runs
    if ((answer.messageId == null || answer.request) && !answer.gotEvent && error instanceof ApiError) {
      answer.failedBeforeStart = true; // refused: the page tells why (start() returns it)
      answer.refusal = error;
      return;
    }
    if (answer.messageId == null) {
      // The POST broke before `start`; the server may have stored the message: ask it.
      answer.view.showError("The connection was lost before the answer started.", {
        label: "Reload conversation",
        run: () => page.openConversation(answer.conversationId),
      });
      answer.view.finish({ status: "error" });
      return;
    }
    if (answer.stopping) return; // stop() sees the stream end without `done` and takes the HTTP path
    const message = error instanceof ConnectionLost ? "The connection was lost." : page.errorText(error);
    answer.view.finish({ status: "interrupted" });
    answer.view.showError(message, { label: "Reconnect", run: () => resumeAnswer(answer) });
  }

  /** Pick an interrupted answer up again from the last event we have. */
  function resumeAnswer(previous) {
    if (active || page.currentConversationId() !== previous.conversationId) return;
    previous.view.resume();
    runAnswer({
      view: previous.view,
      messageId: previous.messageId,
      lastEventId: previous.lastEventId,
      prompt: previous.prompt,
      conversationId: previous.conversationId,
    });
  }

  /**
   * Stop. Over the WebSocket when it is open: send `cancel` and keep reading our stream, which
   * brings the tail and `done` (status cancelled), so the screen ends exactly as the stored answer.
   * Otherwise, or when no `done` comes within SOCKET_STOP_WAIT_MS, over HTTP: abort our fetch (the
   * server sees the client go), POST the cancel (it answers once the answer is stored), then read
   * the stored tail from the last event id. Either way the composer is free at once; a message
   * sent meanwhile waits for settled(). A Stop before `start` waits briefly for the message id:
   * without it nothing can be cancelled.
   */
  async function stop() {
    const answer = active;
    if (!answer || answer.stopping || answer.done) return;
    answer.stopping = true;
    page.setStreaming(false, { busy: true });
    let markStored;
    stopping.set(answer, new Promise((resolve) => (markStored = resolve)));
    try {
      if (answer.messageId == null) await answer.started;
      if (answer.messageId == null || answer.done) {
        // No message id (the POST ended without `start`), or the answer ended meanwhile.
        answer.controller.abort(new DOMException("Stopped by the user", "AbortError"));
        if (!answer.done) answer.view.finish({ status: "cancelled", finish_reason: "cancelled" });
        releaseActive(answer);
        return;
      }
      if (page.sendCancel(answer.messageId)) {
        releaseActive(answer);
        if (await endsWithin(answer, SOCKET_STOP_WAIT_MS)) return; // tail and `done` came on our stream
      }
      await stopOverHttp(answer, markStored);
    } finally {
      markStored();
      stopping.delete(answer);
    }
  }

  /** Whether the answer's stream reaches `done` within `ms`. */
  async function endsWithin(answer, ms) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    try {
      await Promise.race([answer.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return answer.done;
  }

  async function stopOverHttp(answer, markStored) {
    answer.controller.abort(new DOMException("Stopped by the user", "AbortError"));
    try {
      await cancelMessage(answer.messageId);
    } catch {
      // The server could not be reached: keep what is shown, marked as stopped.
    }
    markStored();
    releaseActive(answer); // the composer is usable again; the tail below only updates this view
    try {
      await settleStopped(answer);
    } catch {
      // No tail to be had: what is shown stays.
    }
    if (!answer.done) answer.view.finish({ status: "cancelled", finish_reason: "cancelled" });
  }

  async function settleStopped(answer) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException("timeout", "TimeoutError")), 6000);
    try {
      await followStream({
        messageId: answer.messageId,
        lastEventId: answer.lastEventId,
        signal: controller.signal,
        onEvent: (event) => handleEvent(answer, event),
        options: { maxAttempts: 2 },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  function releaseActive(answer) {
    if (active !== answer) return;
    active = null;
    page.setStreaming(false);
  }

  /**
   * Switching away from a conversation whose answer is streaming: the answer goes on. We keep
   * reading its stream in the background (the server stops an answer nobody follows after a
   * short grace) until `done`, without rendering; switching back re-renders from the API and
   * re-attaches. Only Stop cancels. keepReading=false lets go of it altogether (deleted
   * conversation); closing the tab ends the fetch as well, and then the server's grace decides.
   */
  function detach({ keepReading = true } = {}) {
    const answer = active;
    if (!answer) return;
    active = null;
    page.setStreaming(false);
    if (answer.stopping) return; // stop() is finishing it: cancel sent or about to be
    if (keepReading && !answer.done) {
      answer.background = true;
      background.add(answer);
    } else {
      answer.controller.abort(new DOMException("Detached", "AbortError"));
    }
  }

  /** Stop reading (no cancel) the background answers that match. */
  function dropBackground(match) {
    for (const answer of [...background]) {
      if (!match(answer)) continue;
      background.delete(answer);
      answer.controller.abort(new DOMException("Detached", "AbortError"));
    }
  }

  /** Whether this page reads that answer's stream: shown, being stopped, or in the background. */
  function follows(messageId) {
    if (messageId == null) return false;
    const running = [active, ...stopping.keys(), ...background];
    return running.some((answer) => answer && answer.messageId === messageId);
  }

  return {
    start,
    reattach,
    stop,
    detach,
    dropConversation: (conversationId) => dropBackground((answer) => answer.conversationId === conversationId),
    offerRetry,
    isActive: () => active !== null,
    follows,
    settled: () => Promise.all(stopping.values()),
  };
}
