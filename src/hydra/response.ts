import type { IncomingHttpHeaders } from "node:http";

import { DeliveryError, type DeliveryErrorCode } from "../errors/delivery-error.js";
import { classifyStatus } from "./classify.js";
import { DEFAULT_RATE_LIMIT_DELAY_MS, parseRetryAfter } from "./retry-after.js";
import type { EventResult } from "./types.js";

/** Maximum length, in characters, of a response body or per-event error quoted in an error message. */
export const MAX_QUOTED_BODY_CHARS = 1_024;

/** Largest response body the client reads; a 207 for 500 events is far smaller. */
const MAX_RESPONSE_BYTES = 1_048_576;

/** Status, headers and body text of one response from POST /v1/batch. */
export interface HydraResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * Reads a response body as UTF-8 text. Past maxBytes the rest is discarded (the
 * connection is closed rather than reused) and the text is cut there.
 */
export async function readBodyText(body: AsyncIterable<Buffer>, maxBytes = MAX_RESPONSE_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;

  for await (const chunk of body) {
    const room = maxBytes - size;
    chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
    size += Math.min(chunk.length, room);
    if (size >= maxBytes) break;
  }

  return Buffer.concat(chunks).toString("utf8");
}

/** Shortens text for an error message, marking the cut. */
export function truncateText(text: string, maxChars = MAX_QUOTED_BODY_CHARS): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}… (truncated, ${text.length} characters)`;
}

/**
 * Turns one response into per-event results, in batch order, or throws the
 * DeliveryError for a request that failed as a whole.
 *
 * @throws DeliveryError for every status but 2xx, and for a 207 whose body is not a
 *   list of one result per event (code "transient": the batch is sent again).
 */
export function interpretResponse(response: HydraResponse, eventCount: number, nowMs: number): EventResult[] {
  const { code, retryable } = classifyStatus(response.status);

  if (code === "accepted") {
    return Array.from({ length: eventCount }, () => ({ status: 200, retryable: false }));
  }

  if (code === "multi_status") {
    return parseMultiStatus(response, eventCount, nowMs);
  }

  throw batchError(response, code, retryable, nowMs);
}

function batchError(response: HydraResponse, code: DeliveryErrorCode, retryable: boolean, nowMs: number): DeliveryError {
  const { status } = response;
  const quoted = truncateText(response.body.trim()) || "(empty body)";

  switch (code) {
    case "rate_limited": {
      const retryAtMs = parseRetryAfter(headerValue(response.headers["retry-after"]), nowMs) ?? nowMs + DEFAULT_RATE_LIMIT_DELAY_MS;
      return new DeliveryError(
        `Hydra rate-limited the API key (429); send nothing with it before ${new Date(retryAtMs).toISOString()}. Response: ${quoted}`,
        code,
        retryable,
        status,
        retryAtMs,
      );
    }
    case "unauthorized":
      return new DeliveryError(
        `Hydra rejected the API key (${status}); check the source's hydraApiKey. Response: ${quoted}`,
        code,
        retryable,
        status,
      );
    case "bad_request":
      return new DeliveryError(`Hydra rejected the batch as malformed (400). Response: ${quoted}`, code, retryable, status);
    case "payload_too_large":
      return new DeliveryError(`Hydra rejected the request body as too large (413). Response: ${quoted}`, code, retryable, status);
    default:
      return new DeliveryError(`Hydra responded with status ${status}. Response: ${quoted}`, code, retryable, status);
  }
}

/**
 * Reads the per-event results of a 207. A 429 inside the results takes its time from
 * the response's Retry-After header, when there is one.
 */
function parseMultiStatus(response: HydraResponse, eventCount: number, nowMs: number): EventResult[] {
  const entries = readResultEntries(response.body);
  if (entries === undefined || entries.length !== eventCount) {
    const found = entries === undefined ? "no valid results list" : `${entries.length} results`;
    throw new DeliveryError(
      `Hydra responded 207 with ${found} for ${eventCount} events; the whole batch is sent again. Response: ${truncateText(response.body)}`,
      "transient",
      true,
      207,
    );
  }

  const retryAtMs = parseRetryAfter(headerValue(response.headers["retry-after"]), nowMs);

  return entries.map((entry) => {
    const { code, retryable } = classifyStatus(entry.status);
    if (code === "accepted") return { status: 200, retryable: false };

    const result: EventResult = {
      status: entry.status,
      error: truncateText(entry.error ?? `Hydra rejected the event with status ${entry.status}.`),
      retryable,
      code: code as DeliveryErrorCode,
    };
    if (code === "rate_limited") result.retryAtMs = retryAtMs ?? nowMs + DEFAULT_RATE_LIMIT_DELAY_MS;
    return result;
  });
}

interface ResultEntry {
  status: number;
  error?: string;
}

/** Returns the `results` of a 207 body, or undefined when any part of it is malformed. */
function readResultEntries(body: string): ResultEntry[] | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }

  const results = (json as { results?: unknown } | null)?.results;
  if (!Array.isArray(results)) return undefined;

  const entries: ResultEntry[] = [];
  for (const item of results) {
    const status = (item as { status?: unknown } | null)?.status;
    const error = (item as { error?: unknown } | null)?.error;
    // A per-event 207 would mean "look further inside", which the contract does not define.
    if (typeof status !== "number" || !Number.isInteger(status) || status < 100 || status > 599 || status === 207) return undefined;
    entries.push(typeof error === "string" ? { status, error } : { status });
  }
  return entries;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
