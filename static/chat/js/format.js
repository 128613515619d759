// Small pure formatters for the message footer.

const STATUS_LABELS = {
  cancelled: "Stopped",
  interrupted: "Interrupted",
  error: "Error",
};

const REASONS = {
  stop: "finished",
  length: "hit the length limit",
  cancelled: "stopped",
  content_filter: "filtered",
  error: "ended by an error",
  interrupted: "interrupted",
};

/** The visible word for a message status ("" when nothing needs saying). */
export function statusLabel(status) {
  return STATUS_LABELS[status] || "";
}

/** "0.42 s to first token · 38.1 tok/s · finished" from a message's stats. */
export function formatStats(stats, reason = stats?.finish_reason) {
  if (!stats && !reason) return "";
  const parts = [];
  if (Number.isFinite(stats?.ttft_ms)) parts.push(`${formatSeconds(stats.ttft_ms)} to first token`);
  if (Number.isFinite(stats?.tokens_per_s) && stats.tokens_per_s > 0) {
    parts.push(`${stats.tokens_per_s.toFixed(stats.tokens_per_s < 10 ? 1 : 0)} tok/s`);
  }
  if (Number.isFinite(stats?.tokens)) parts.push(`${stats.tokens} tokens`);
  const why = reason || stats?.finish_reason;
  if (why) parts.push(REASONS[why] || why);
  return parts.join(" · ");
}

function formatSeconds(ms) {
  return ms < 10000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms / 1000)} s`;
}
