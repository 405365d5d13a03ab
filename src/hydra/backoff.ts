/**
 * Computes the delay before retry number `attempt` (1 for the first retry), in whole
 * milliseconds: exponential backoff with full jitter and a ceiling,
 * `floor(random() * min(maxMs, baseMs * 2^(attempt - 1)))`. Full jitter spreads the
 * retries of many batches that failed together across the whole interval.
 */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponent = Number.isNaN(attempt) ? 0 : Math.max(0, Math.floor(attempt) - 1);
  const ceilingMs = Math.min(maxMs, baseMs * 2 ** exponent);
  return Math.floor(random() * ceilingMs);
}
