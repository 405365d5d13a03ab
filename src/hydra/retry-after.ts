/** Wait after a 429 that carries no usable Retry-After header, in milliseconds. */
export const DEFAULT_RATE_LIMIT_DELAY_MS = 5_000;

const DELAY_SECONDS = /^\d+(?:\.\d+)?$/;

/** The three HTTP-date forms: IMF-fixdate, RFC 850 and asctime. Each has a clock time and a month name. */
const HTTP_DATE = /^[A-Za-z]{3,9},?\s.*\d{1,2}:\d{2}:\d{2}/;

/**
 * Parses a Retry-After header into the time, in epoch milliseconds, before which no
 * request should be sent. The header is either delay-seconds or an HTTP date, of any
 * length: no cap is applied, so "3600" waits an hour. A date in the past returns nowMs.
 * Returns undefined for a missing, empty or unreadable header.
 */
export function parseRetryAfter(header: string | undefined, nowMs: number): number | undefined {
  const text = header?.trim();
  if (!text) return undefined;

  if (DELAY_SECONDS.test(text)) {
    const delayMs = Math.ceil(Number(text) * 1_000);
    return Number.isFinite(delayMs) ? nowMs + delayMs : undefined;
  }

  if (!HTTP_DATE.test(text)) return undefined;
  // asctime dates carry no zone but are GMT; Date.parse would read them as local time.
  const dateMs = Date.parse(/\b(?:GMT|UTC)\b/i.test(text) ? text : `${text} GMT`);
  if (!Number.isFinite(dateMs)) return undefined;
  return Math.max(dateMs, nowMs);
}
