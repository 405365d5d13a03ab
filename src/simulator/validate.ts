import { MAX_BATCH_EVENTS } from "../hydra/limits.js";

/** ISO 8601 in UTC with a `Z`, as hydra-sync writes every time it sends. */
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

const EVENT_FLAGS = new Set(["negative", "neutral", "positive"]);

/** A parsed POST /v1/batch body, or the reason the whole request is invalid (a 400). */
export type EnvelopeCheck = { ok: true; sentAt: string; events: unknown[] } | { ok: false; error: string };

/** Checks the request envelope: `{ "sentAt": <ISO 8601 UTC>, "batch": [1 to 500 events] }`. */
export function checkEnvelope(body: unknown): EnvelopeCheck {
  if (!isObject(body)) return { ok: false, error: "The body must be a JSON object with sentAt and batch." };

  const { sentAt, batch } = body;
  if (!Array.isArray(batch)) return { ok: false, error: "batch is missing or not an array." };
  if (batch.length === 0 || batch.length > MAX_BATCH_EVENTS) {
    return { ok: false, error: `batch holds ${batch.length} events; send 1 to ${MAX_BATCH_EVENTS}.` };
  }
  if (!isIsoUtc(sentAt)) return { ok: false, error: "sentAt is missing or not an ISO 8601 UTC time." };

  return { ok: true, sentAt, events: batch };
}

/**
 * Checks one event against the guarantees that hydra-sync gives Hydra. Returns the first
 * rule the event breaks, or undefined for a valid event.
 */
export function checkEvent(event: unknown): string | undefined {
  if (!isObject(event)) return "The event must be a JSON object.";
  if ("writeKey" in event) return "writeKey must not be sent to Hydra.";
  if (event.type !== "identify" && event.type !== "track") return 'type must be "identify" or "track".';
  if (!isNonEmptyString(event.messageId)) return "messageId must be a non-empty string.";

  for (const field of ["userId", "anonymousId"] as const) {
    if (event[field] !== undefined && event[field] !== null && typeof event[field] !== "string") {
      return `${field} must be a string.`;
    }
  }
  if (!isNonEmptyString(event.userId) && !isNonEmptyString(event.anonymousId)) {
    return "userId or anonymousId must be a non-empty string.";
  }

  if (!isIsoUtc(event.timestamp)) return "timestamp must be an ISO 8601 UTC time.";
  if (!isIsoUtc(event.receivedAt)) return "receivedAt must be an ISO 8601 UTC time.";
  if (event.context !== undefined && !isObject(event.context)) return "context must be an object.";

  if (event.type === "identify") {
    if (event.traits !== undefined && !isObject(event.traits)) return "traits must be an object.";
    return undefined;
  }

  if (!isNonEmptyString(event.event)) return "event must be a non-empty string.";
  if (!isObject(event.properties)) return "properties must be an object.";
  if (typeof event.properties.eventFlag !== "string" || !EVENT_FLAGS.has(event.properties.eventFlag)) {
    return 'properties.eventFlag must be exactly "negative", "neutral" or "positive".';
  }
  return undefined;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

function isIsoUtc(value: unknown): value is string {
  return typeof value === "string" && ISO_UTC.test(value) && Number.isFinite(Date.parse(value));
}
