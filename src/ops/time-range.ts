import { parseDurationMs } from "../config/duration.js";

/** A time given on the command line could not be read. Not retryable: fix the argument. */
export class InvalidTimeError extends Error {
  readonly retryable = false;

  constructor(option: string, text: string) {
    super(
      `Invalid ${option} ${JSON.stringify(text)}: use an ISO 8601 time such as 2025-03-11T14:00:00Z, ` +
        'a duration before now such as "2h ago" or "90m", or "now".',
    );
    this.name = "InvalidTimeError";
  }
}

/**
 * Parses a command-line time into epoch milliseconds: "now", an ISO 8601 date or time
 * ("2025-03-11", "2025-03-11T14:00:00Z"), or a duration before `nowMs` with or without
 * "ago" ("2h ago", "30m"). A bare number is rejected because it could mean milliseconds,
 * seconds or an epoch.
 *
 * @throws InvalidTimeError naming the option and the accepted forms.
 */
export function parseTime(option: string, text: string, nowMs: number): number {
  const trimmed = text.trim();
  if (trimmed === "now") return nowMs;

  const durationText = trimmed.replace(/\s+ago$/, "");
  if (!/^\d+$/.test(durationText)) {
    const durationMs = parseDurationMs(durationText);
    if (durationMs !== undefined) return nowMs - durationMs;
  }

  if (/^\d{4}-\d{2}-\d{2}/.test(trimmed)) {
    const ms = Date.parse(trimmed);
    if (Number.isFinite(ms)) return ms;
  }

  throw new InvalidTimeError(option, text);
}

/** An inclusive range of epoch milliseconds. */
export interface TimeRange {
  sinceMs: number;
  untilMs: number;
}
