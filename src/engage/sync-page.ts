import type { Redis } from "ioredis";

import type { EngageKeys } from "./keys.js";
import { buildSyncEvent, ENVELOPE_BYTES, type PackedEvent } from "./sync-events.js";
import type { MemberError } from "./sync-state.js";

/** Fields of the `pending` hash read per HSCAN call; a hint to Redis, which may return more. */
const SCAN_COUNT = 500;

/** Settings and connections that a sync needs to turn pending members into events. */
export interface PageContext {
  redis: Redis;
  keys: EngageKeys;
  source: string;
  audience: string;
  isMembership: boolean;
  /** The audience's last context.personas as JSON text, "" when unknown. */
  personasJson: string;
  syncNumber: number;
  /** ISO 8601 UTC time of the sync, the events' timestamp and receivedAt. */
  syncTime: string;
  maxBatchBytes: number;
  nowMs(): number;
}

/** Events built from one HSCAN page of the `pending` hash. */
export interface SyncPage {
  /** Cursor of the next page; "0" after the last one. */
  nextCursor: string;
  events: PackedEvent[];
  /** Members whose event alone exceeds BATCH_MAX_BYTES; they stay pending with this error. */
  tooLarge: { member: string; error: MemberError }[];
}

/**
 * Reads one page of pending members (HSCAN, then one pipeline of HMGET on `current` and
 * `errors`) and builds their identify events. Members that Hydra rejected earlier in
 * this same sync are skipped, so a resumed sync does not send them again.
 */
export async function readSyncPage(context: PageContext, cursor: string): Promise<SyncPage> {
  const { redis, keys, audience, syncNumber } = context;
  const [nextCursor, flat] = await redis.hscan(keys.pending(audience), cursor, "COUNT", SCAN_COUNT);
  const members = flat.filter((_, index) => index % 2 === 0);
  const page: SyncPage = { nextCursor, events: [], tooLarge: [] };
  if (members.length === 0) return page;

  const replies = await redis.pipeline().hmget(keys.current(audience), ...members).hmget(keys.errors(audience), ...members).exec();
  const records = replies?.[0]?.[1] as (string | null)[];
  const errors = replies?.[1]?.[1] as (string | null)[];
  const maxEventBytes = context.maxBatchBytes - ENVELOPE_BYTES;

  members.forEach((member, index) => {
    if (rejectedInSync(errors[index], syncNumber)) return;

    const { valueJson, email } = readRecord(records[index], context.isMembership);
    // NOTE: the store never removes a computed trait value, so a pending computed trait
    // member always has a record. One without would be skipped and stay pending.
    if (valueJson === undefined) return;

    const { messageId, json } = buildSyncEvent({ source: context.source, audience, member, valueJson, email, personasJson: context.personasJson, syncNumber, syncTime: context.syncTime });
    const bytes = Buffer.byteLength(json);
    if (bytes > maxEventBytes) {
      const error: MemberError = {
        syncNumber,
        status: 413,
        code: "payload_too_large",
        error: `the event is ${bytes} bytes, more than BATCH_MAX_BYTES allows`,
        retryable: false,
        at: context.nowMs(),
      };
      page.tooLarge.push({ member, error });
      return;
    }
    page.events.push({ member, valueJson, messageId, json, bytes });
  });

  return page;
}

function rejectedInSync(errorJson: string | null, syncNumber: number): boolean {
  if (errorJson === null) return false;
  try {
    return (JSON.parse(errorJson) as Partial<MemberError>).syncNumber === syncNumber;
  } catch {
    return false;
  }
}

/** Splits a `current` record; a missing membership record means the member left. */
function readRecord(record: string | null, isMembership: boolean): { valueJson?: string; email: string } {
  if (record === null) return { valueJson: isMembership ? "false" : undefined, email: "" };

  const first = record.indexOf("\t");
  const second = record.indexOf("\t", first + 1);
  return { email: record.slice(first + 1, second), valueJson: record.slice(second + 1) };
}
