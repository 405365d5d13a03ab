import { randomUUID } from "node:crypto";

import { isJsonObject, type JsonObject, type ValidEvent } from "./validate.js";

/** Values that every event of one request shares. */
export interface RequestContext {
  receivedAtMs: number;
  /** `receivedAtMs` as ISO 8601 UTC text with milliseconds. */
  receivedAt: string;
  /** The batch's `sentAt`, used by events that have none of their own. */
  batchSentAtMs?: number;
  /** The batch's `context` and `integrations`, merged into each event under its own keys. */
  batchContext?: JsonObject;
  batchIntegrations?: JsonObject;
}

const EVENT_FLAGS: ReadonlySet<string> = new Set(["negative", "neutral", "positive"]);

/**
 * Returns "negative", "neutral" or "positive" for a `properties.eventFlag` value,
 * compared case-insensitively after trimming white space. Any other value, a missing
 * one included, is "neutral".
 */
export function normalizeEventFlag(value: unknown): string {
  if (typeof value !== "string") return "neutral";
  const flag = value.trim().toLowerCase();
  return EVENT_FLAGS.has(flag) ? flag : "neutral";
}

/**
 * Computes the event's `timestamp` in epoch milliseconds, as Segment corrects client
 * clock skew: `receivedAt - (sentAt - (originalTimestamp ?? timestamp))`. Without a
 * `sentAt` the event's time is kept; without any time it is `receivedAt`.
 */
export function correctedTimestampMs(event: ValidEvent, request: RequestContext): number {
  const sentAtMs = event.sentAtMs ?? request.batchSentAtMs;

  if (sentAtMs === undefined) {
    return event.timestampMs ?? event.originalTimestampMs ?? request.receivedAtMs;
  }

  const sentTimeMs = event.originalTimestampMs ?? event.timestampMs;
  if (sentTimeMs === undefined) return request.receivedAtMs;
  return request.receivedAtMs - (sentAtMs - sentTimeMs);
}

/**
 * Fields of an event as sent, saved before normalizeEvent changes them in place, so that
 * restoreEvent can bring back the event as sent for the rejected stream.
 */
export interface SentFields {
  type: unknown;
  userId: unknown;
  anonymousId: unknown;
  messageId: unknown;
  receivedAt: unknown;
  timestamp: unknown;
  sentAt: unknown;
  writeKey: unknown;
  context: unknown;
  integrations: unknown;
  properties: unknown;
  eventFlag: unknown;
}

/**
 * Turns the parsed event into the event as hydra-sync stores it, in place, and returns the
 * fields it replaced. Changing the object JSON.parse made costs far less than copying it.
 *
 * - `messageId` is kept, or generated once with crypto.randomUUID().
 * - `receivedAt` is this request's; `timestamp` is corrected for clock skew and written
 *   in UTC; `originalTimestamp` is kept as sent; `sentAt` and `writeKey` are dropped.
 * - A numeric `userId` or `anonymousId` becomes its decimal string; an empty one is dropped.
 * - The batch's `context` and `integrations` are merged in, the event's own keys winning.
 * - A track's `properties.eventFlag` becomes "negative", "neutral" or "positive".
 */
export function normalizeEvent(event: ValidEvent, request: RequestContext): SentFields {
  const stored = event.raw;
  const properties = isJsonObject(stored.properties) ? stored.properties : undefined;
  const sent: SentFields = {
    type: stored.type,
    userId: stored.userId,
    anonymousId: stored.anonymousId,
    messageId: stored.messageId,
    receivedAt: stored.receivedAt,
    timestamp: stored.timestamp,
    sentAt: stored.sentAt,
    writeKey: stored.writeKey,
    context: stored.context,
    integrations: stored.integrations,
    properties: stored.properties,
    eventFlag: properties?.eventFlag,
  };

  stored.type = event.type;
  if (event.userId !== undefined) stored.userId = event.userId;
  else if (sent.userId !== undefined) stored.userId = undefined;
  if (event.anonymousId !== undefined) stored.anonymousId = event.anonymousId;
  else if (sent.anonymousId !== undefined) stored.anonymousId = undefined;

  stored.messageId = event.messageId ?? randomUUID();
  stored.receivedAt = request.receivedAt;
  stored.timestamp = new Date(correctedTimestampMs(event, request)).toISOString();

  // JSON.stringify leaves out undefined values; this avoids `delete`, which would turn
  // the object into a slower dictionary-mode object.
  if (sent.sentAt !== undefined) stored.sentAt = undefined;
  if (sent.writeKey !== undefined) stored.writeKey = undefined;

  if (request.batchContext !== undefined) {
    stored.context = isJsonObject(sent.context) ? { ...request.batchContext, ...sent.context } : request.batchContext;
  }
  if (request.batchIntegrations !== undefined) {
    stored.integrations = isJsonObject(sent.integrations)
      ? { ...request.batchIntegrations, ...sent.integrations }
      : request.batchIntegrations;
  }

  if (event.type === "track") {
    if (properties === undefined) stored.properties = { eventFlag: "neutral" };
    else properties.eventFlag = normalizeEventFlag(sent.eventFlag);
  }

  return sent;
}

/** Puts back the fields normalizeEvent replaced; the write key stays out. */
export function restoreEvent(event: ValidEvent, sent: SentFields): void {
  const raw = event.raw;
  raw.type = sent.type;
  raw.userId = sent.userId;
  raw.anonymousId = sent.anonymousId;
  raw.messageId = sent.messageId;
  raw.receivedAt = sent.receivedAt;
  raw.timestamp = sent.timestamp;
  raw.sentAt = sent.sentAt;
  raw.context = sent.context;
  raw.integrations = sent.integrations;
  raw.properties = sent.properties;
  if (isJsonObject(sent.properties)) sent.properties.eventFlag = sent.eventFlag;
}
