// The JSON API of PROTOCOL.md: one small function per call. Unsafe methods send the CSRF token.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message || code || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = code || "http_error";
    this.retryAfter = retryAfter; // seconds the server asks us to wait (Retry-After), or null
  }
}

/** Seconds from `retry_after` in the body, else the Retry-After header (seconds or an HTTP date). */
export function retryAfterSeconds(bodyValue, header) {
  const fromBody = Number(bodyValue);
  if (bodyValue != null && Number.isFinite(fromBody) && fromBody >= 0) return fromBody;
  if (!header) return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** The CSRF token: the `csrftoken` cookie, else the token of a form on the page. */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

/** Headers for a request; unsafe methods get X-CSRFToken. */
export function requestHeaders(method, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRFToken"] = csrfToken();
  return headers;
}

/** Turn a non-2xx response into an ApiError, reading the {"error": {code, message}} body. */
export async function errorFromResponse(response) {
  let code = "";
  let message = "";
  let retryAfter = null;
  try {
    const body = await response.json();
    code = body?.error?.code || "";
    message = body?.error?.message || "";
    retryAfter = body?.error?.retry_after ?? null;
  } catch {
    // Not JSON (a proxy page, a crash): keep the status only.
  }
  if (response.status === 401 || response.status === 403) {
    message ||= "Your session has ended. Please sign in again.";
  }
  const wait = retryAfterSeconds(retryAfter, response.headers?.get?.("Retry-After"));
  return new ApiError(response.status, code, message || response.statusText, wait);
}

async function apiJson(method, url, body) {
  const init = { method, headers: requestHeaders(method), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await errorFromResponse(response);
  if (response.status === 204) return null;
  return response.json();
}

export const listConversations = () =>
  apiJson("GET", "/api/conversations/").then((body) => body.conversations);
export const createConversation = (title) =>
  apiJson("POST", "/api/conversations/", title ? { title } : {});
/** A conversation with the branch on screen: through the newest message, or through `path`. */
export const getConversation = (id, path = null) =>
  apiJson("GET", `/api/conversations/${id}/${path ? `?path=${encodeURIComponent(path)}` : ""}`);
export const regenerateUrl = (id) => `/api/messages/${id}/regenerate/`;
export const editUrl = (id) => `/api/messages/${id}/edit/`;
export const continueUrl = (id) => `/api/messages/${id}/continue/`;
export const deleteConversation = (id) => apiJson("DELETE", `/api/conversations/${id}/`);
/** Change any of {title, model, system_prompt}; answers the conversation. */
export const patchConversation = (id, changes) => apiJson("PATCH", `/api/conversations/${id}/`, changes);
/** Conversations whose title or messages match, each with `matches: [{message_id, snippet}]`. */
export const searchConversations = (q) =>
  apiJson("GET", `/api/conversations/?q=${encodeURIComponent(q)}`).then((body) => body.conversations);
/** {models: [{id}], default}; refresh asks the model server again rather than the server's cache. */
export const listModels = (refresh = false) => apiJson("GET", `/api/models/${refresh ? "?refresh=1" : ""}`);
export const cancelMessage = (id) => apiJson("POST", `/api/messages/${id}/cancel/`, {});
export const putFeedback = (id, feedback) => apiJson("PUT", `/api/messages/${id}/feedback/`, feedback);
export const deleteFeedback = (id) => apiJson("DELETE", `/api/messages/${id}/feedback/`);

export const postMessageUrl = (conversationId) => `/api/conversations/${conversationId}/messages/`;
export const streamUrl = (messageId, lastEventId) =>
  `/api/messages/${messageId}/stream/?last_event_id=${encodeURIComponent(lastEventId)}`;
