import type { Rejection } from "./errors.js";
import { parseIsoTimestamp } from "./timestamp.js";

/** Segment's event types. */
export type EventType = "identify" | "track" | "page" | "screen" | "group" | "alias";

const EVENT_TYPES: ReadonlySet<string> = new Set<EventType>(["identify", "track", "page", "screen", "group", "alias"]);

export function isEventType(value: unknown): value is EventType {
  return typeof value === "string" && EVENT_TYPES.has(value);
}

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An event that passed validation, with its ids as strings and its timestamps parsed. */
export interface ValidEvent {
  raw: JsonObject;
  type: EventType;
  userId?: string;
  anonymousId?: string;
  /** Undefined when the event has none; the producer generates one. */
  messageId?: string;
  /** Epoch milliseconds of `timestamp`, `originalTimestamp` and the event's own `sentAt`. */
  timestampMs?: number;
  originalTimestampMs?: number;
  sentAtMs?: number;
}

/** How validation treats one event. */
export interface ValidateOptions {
  /** Type set by a single-event endpoint such as /v1/track; it replaces the body's `type`. */
  endpointType?: EventType;
  /** Leaves `sentAt` unchecked because the caller does not use it. */
  ignoreSentAt?: boolean;
}

function invalidField(field: string, message: string): Rejection {
  return { reason: "invalid_field", field, message };
}

/** Reads a userId or anonymousId: a non-empty string, or a number as its decimal string. */
function readUserKey(raw: JsonObject, field: "userId" | "anonymousId"): string | undefined | Rejection {
  const value = raw[field];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  return invalidField(field, `"${field}" must be a non-empty string or a number`);
}

/** Reads an ISO 8601 timestamp field into epoch milliseconds; null counts as absent. */
function readTimestamp(raw: JsonObject, field: string): number | undefined | Rejection {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;

  const ms = typeof value === "string" ? parseIsoTimestamp(value) : undefined;
  if (ms === undefined) {
    return {
      reason: "invalid_timestamp",
      field,
      message: `"${field}" must be an ISO 8601 date-time string, such as "2025-03-11T09:05:00.000Z"`,
    };
  }
  return ms;
}

function isRejection(value: unknown): value is Rejection {
  return typeof value === "object" && value !== null;
}

/**
 * Checks one event of a request and returns it with its ids and timestamps read, or the
 * rejection that names the field at fault.
 */
export function validateEvent(raw: unknown, options: ValidateOptions): ValidEvent | Rejection {
  if (!isJsonObject(raw)) {
    return { reason: "not_an_object", message: "each event must be a JSON object" };
  }

  const type = options.endpointType ?? raw.type;
  if (!isEventType(type)) {
    return {
      reason: "unknown_type",
      field: "type",
      message: `"type" must be one of identify, track, page, screen, group, alias`,
    };
  }

  if (type === "track" && (typeof raw.event !== "string" || raw.event === "")) {
    return { reason: "missing_event", field: "event", message: 'track events need an event name: set "event" to a non-empty string' };
  }

  const userId = readUserKey(raw, "userId");
  if (isRejection(userId)) return userId;
  const anonymousId = readUserKey(raw, "anonymousId");
  if (isRejection(anonymousId)) return anonymousId;
  if (userId === undefined && anonymousId === undefined) {
    return {
      reason: "missing_user",
      field: "userId",
      message: 'events need a user: set "userId" or "anonymousId" to a non-empty string or a number',
    };
  }

  let messageId: string | undefined;
  const rawMessageId = raw.messageId;
  if (typeof rawMessageId === "string") {
    if (rawMessageId !== "") messageId = rawMessageId;
  } else if (typeof rawMessageId === "number") {
    messageId = String(rawMessageId);
  } else if (rawMessageId !== undefined && rawMessageId !== null) {
    return invalidField("messageId", '"messageId" must be a string; leave it out to have one generated');
  }

  const timestampMs = readTimestamp(raw, "timestamp");
  if (isRejection(timestampMs)) return timestampMs;
  const originalTimestampMs = readTimestamp(raw, "originalTimestamp");
  if (isRejection(originalTimestampMs)) return originalTimestampMs;
  let sentAtMs: number | undefined;
  if (!options.ignoreSentAt) {
    const sentAt = readTimestamp(raw, "sentAt");
    if (isRejection(sentAt)) return sentAt;
    sentAtMs = sentAt;
  }

  for (const field of ["context", "integrations"] as const) {
    const value = raw[field];
    if (value !== undefined && value !== null && !isJsonObject(value)) {
      return invalidField(field, `"${field}" must be a JSON object`);
    }
  }
  if (type === "track" && raw.properties !== undefined && raw.properties !== null && !isJsonObject(raw.properties)) {
    return invalidField("properties", '"properties" must be a JSON object');
  }

  return { raw, type, userId, anonymousId, messageId, timestampMs, originalTimestampMs, sentAtMs };
}

/** Tells a rejection from a valid event. */
export function isRejected(result: ValidEvent | Rejection): result is Rejection {
  return (result as Rejection).reason !== undefined;
}
