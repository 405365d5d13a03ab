import { createHash } from "node:crypto";

/** Prefix of the messageIds of sync identifies; Engage's own events start with "personas_". */
const MESSAGE_ID_PREFIX = "personas_sync_";

/**
 * Bytes set aside in every request for the body around the events, so a packed batch
 * stays under BATCH_MAX_BYTES. The Hydra client's envelope (`{"sentAt":"…","batch":[`
 * and `]}`) is 46 bytes; the rest is margin.
 */
export const ENVELOPE_BYTES = 256;

/** Input of one sync identify: the member, its value and the sync it belongs to. */
export interface SyncEventInput {
  source: string;
  audience: string;
  /** `u:<userId>` or `a:<anonymousId>`. */
  member: string;
  valueJson: string;
  /** "" when the membership event had no email. */
  email: string;
  /** The audience's last `context.personas` as JSON text, "" when unknown. */
  personasJson: string;
  syncNumber: number;
  /** Sync start time, ISO 8601 UTC, used as timestamp and receivedAt. */
  syncTime: string;
}

/**
 * Returns the messageId of a change: a SHA-256 of source, audience, member, value and
 * sync number. A retried or resumed sync therefore sends a change under the same id,
 * and the same value in a later sync gets a new one.
 */
export function syncMessageId(input: Pick<SyncEventInput, "source" | "audience" | "member" | "valueJson" | "syncNumber">): string {
  const hash = createHash("sha256")
    .update([input.source, input.audience, input.member, input.valueJson, String(input.syncNumber)].join("\n"))
    .digest("hex");
  return `${MESSAGE_ID_PREFIX}${hash.slice(0, 32)}`;
}

/** Builds the identify event that sets a member's value in Hydra, as JSON text, with its messageId. */
export function buildSyncEvent(input: SyncEventInput): { messageId: string; json: string } {
  const traits: Record<string, unknown> = { [input.audience]: JSON.parse(input.valueJson) };
  if (input.email !== "") traits.email = input.email;

  const identity = input.member.startsWith("u:") ? { userId: input.member.slice(2) } : { anonymousId: input.member.slice(2) };
  const personas: unknown = input.personasJson === "" ? undefined : JSON.parse(input.personasJson);

  const messageId = syncMessageId(input);
  const json = JSON.stringify({
    type: "identify",
    ...identity,
    messageId,
    traits,
    context: personas === undefined ? {} : { personas },
    timestamp: input.syncTime,
    receivedAt: input.syncTime,
  });
  return { messageId, json };
}

/** An event ready to send, with its member and its size in UTF-8 bytes. */
export interface PackedEvent {
  member: string;
  valueJson: string;
  messageId: string;
  json: string;
  bytes: number;
}

/**
 * Splits events into batches of at most `maxEvents` events and `maxBytes` bytes of
 * body, in order. The caller drops events larger than one batch beforehand.
 */
export function packBatches(events: PackedEvent[], maxEvents: number, maxBytes: number): PackedEvent[][] {
  const batches: PackedEvent[][] = [];
  let batch: PackedEvent[] = [];
  let bytes = ENVELOPE_BYTES;

  for (const event of events) {
    const added = event.bytes + 1;
    if (batch.length > 0 && (batch.length >= maxEvents || bytes + added > maxBytes)) {
      batches.push(batch);
      batch = [];
      bytes = ENVELOPE_BYTES;
    }
    batch.push(event);
    bytes += added;
  }

  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * Returns the Idempotency-Key of a batch: a hash of its sorted messageIds, so a batch
 * that a resumed sync rebuilds with the same events in another order gets the same key.
 */
export function batchIdempotencyKey(events: PackedEvent[]): string {
  const hash = createHash("sha256");
  for (const messageId of events.map((event) => event.messageId).sort()) hash.update(`${messageId}\n`);
  return `${MESSAGE_ID_PREFIX}batch_${hash.digest("hex").slice(0, 32)}`;
}
