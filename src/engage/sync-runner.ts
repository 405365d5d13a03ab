import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import { RedisKeys } from "../redis/keys.js";
import type { Clock } from "./clock.js";
import { EngageKeys } from "./keys.js";
import { batchIdempotencyKey, buildSyncEvent, ENVELOPE_BYTES, packBatches, type PackedEvent } from "./sync-events.js";
import { beginSync, endSync, recordBatch, type BatchOutcome, type MemberError, type SyncKind } from "./sync-state.js";

/** Fields of the `pending` hash read per HSCAN call; a hint to Redis, which may return more. */
const SCAN_COUNT = 500;

/** Data of a job in the `engage-sync` queue: one sync of one audience or computed trait. */
export interface SyncJobData {
  source: string;
  audience: string;
  syncNumber: number;
  /** Time the sync was due, epoch ms. */
  dueAt: number;
  /** Time the scheduler claimed it, epoch ms. */
  claimedAt: number;
}

/** Return value of a sync job. */
export interface SyncResult {
  status: "completed" | "already_completed" | "superseded";
  source: string;
  audience: string;
  syncNumber: number;
  kind: SyncKind;
  /** Events Hydra accepted, over every attempt of the sync. */
  sent: number;
  /** Events Hydra rejected (or too large to send); their members stay pending. */
  failed: number;
}

export interface SyncDependencies {
  redis: Redis;
  config: Config;
  logger: Logger;
  clock: Clock;
  hydraClient: HydraClient;
}

/** A source named in a sync job but missing from the configuration. Not retryable. */
export class UnknownSourceError extends Error {
  readonly retryable = false;

  constructor(source: string) {
    super(`Engage sync for source "${source}" cannot run: the source is not in the configuration; add it to SOURCES_FILE or remove its audience state.`);
    this.name = "UnknownSourceError";
  }
}

/**
 * Runs one sync: sends the current value of every pending member of the audience to
 * Hydra in batches, and records after each batch who was delivered and who was rejected.
 *
 * A new sync walks the `pending` hash with HSCAN; the cursor is stored with each page's
 * last batch, so an attempt that resumes after a crash or a failed request continues
 * there. Delivered members have left `pending` and members rejected in this sync are
 * skipped, so nothing is sent twice within the sync, and a resent batch (crash between
 * Hydra's answer and the record) carries the same messageIds.
 *
 * @throws DeliveryError when a request fails as a whole; the job retries and resumes.
 * @throws UnknownSourceError when the job's source is not configured.
 */
export async function runSync(deps: SyncDependencies, data: SyncJobData): Promise<SyncResult> {
  const { redis, config, logger, clock, hydraClient } = deps;
  const source = config.sources.find((candidate) => candidate.name === data.source);
  if (!source) throw new UnknownSourceError(data.source);

  const keys = new EngageKeys(new RedisKeys(config.redisPrefix), data.source);
  const { audience, syncNumber } = data;
  const log = logger.child({ source: data.source, audience, syncNumber });

  const start = await beginSync(redis, keys, audience, syncNumber, clock.now());
  const result: SyncResult = { status: "completed", source: data.source, audience, syncNumber, kind: start.kind, sent: start.sent, failed: start.failed };
  if (start.status === "superseded") {
    log.info("skipped a sync that a later sync of the audience replaced");
    return { ...result, status: "superseded" };
  }
  if (start.status === "completed") {
    log.info("skipped a sync that already completed");
    return { ...result, status: "already_completed" };
  }
  if (start.supersededNumber > 0) log.warn({ supersededSyncNumber: start.supersededNumber }, "a new sync replaced an unfinished one");
  log.info({ kind: start.kind, resumed: start.status === "resume", cursor: start.cursor }, "sync started");

  const [personasJson, membershipFlag] = await redis.hmget(keys.meta(audience), "personas", "membership");
  const isMembership = membershipFlag !== "0";
  const syncTime = new Date(start.startedAt).toISOString();
  const maxEventBytes = config.maxBatchBytes - ENVELOPE_BYTES;

  let cursor = start.cursor;
  do {
    const [nextCursor, flat] = await redis.hscan(keys.pending(audience), cursor, "COUNT", SCAN_COUNT);
    const members = flat.filter((_, index) => index % 2 === 0);

    const events: PackedEvent[] = [];
    const tooLarge: BatchOutcome["rejected"] = [];
    if (members.length > 0) {
      const replies = await redis.pipeline().hmget(keys.current(audience), ...members).hmget(keys.errors(audience), ...members).exec();
      const records = replies?.[0]?.[1] as (string | null)[];
      const errors = replies?.[1]?.[1] as (string | null)[];

      members.forEach((member, index) => {
        if (rejectedInSync(errors[index], syncNumber)) return;

        const { valueJson, email } = readRecord(records[index], isMembership);
        // NOTE: a computed trait member without a current record cannot happen through the
        // store (values are never removed); such a member is left pending and skipped.
        if (valueJson === undefined) return;

        const { messageId, json } = buildSyncEvent({ source: data.source, audience, member, valueJson, email, personasJson: personasJson ?? "", syncNumber, syncTime });
        const bytes = Buffer.byteLength(json);
        if (bytes > maxEventBytes) {
          tooLarge.push({ member, error: memberError(syncNumber, 413, "payload_too_large", `the event is ${bytes} bytes, more than BATCH_MAX_BYTES allows`, false, clock.now()) });
          return;
        }
        events.push({ member, valueJson, messageId, json, bytes });
      });
    }

    const batches = packBatches(events, config.maxBatchEvents, config.maxBatchBytes);
    if (batches.length === 0) {
      // Nothing to send on this page; record the too-large events and move the cursor.
      const running = await recordBatch(redis, keys, audience, isMembership, syncNumber, { delivered: [], rejected: tooLarge, nextCursor });
      if (!running) return superseded(log, result);
      result.failed += tooLarge.length;
    }

    for (const [index, batch] of batches.entries()) {
      const isLast = index === batches.length - 1;
      const results = await hydraClient.sendBatch({ apiKey: source.hydraApiKey, idempotencyKey: batchIdempotencyKey(batch), events: batch.map((event) => event.json) });

      const outcome: BatchOutcome = { delivered: [], rejected: isLast ? tooLarge : [], nextCursor: isLast ? nextCursor : undefined };
      batch.forEach((event, position) => {
        const eventResult = results[position];
        if (eventResult?.status === 200) {
          outcome.delivered.push({ member: event.member, valueJson: event.valueJson });
          return;
        }
        const status = eventResult?.status ?? 0;
        const message = eventResult?.error ?? (eventResult ? `Hydra answered ${status}` : "Hydra returned no result for the event");
        outcome.rejected.push({ member: event.member, error: memberError(syncNumber, status, eventResult?.code, message, eventResult?.retryable ?? true, clock.now()) });
      });

      const running = await recordBatch(redis, keys, audience, isMembership, syncNumber, outcome);
      result.sent += outcome.delivered.length;
      result.failed += outcome.rejected.length;
      if (outcome.rejected.length > 0) {
        const first = outcome.rejected[0].error;
        log.warn({ rejected: outcome.rejected.length, status: first.status, error: first.error }, "Hydra rejected events of a sync; their members stay pending");
      }
      if (!running) return superseded(log, result);
    }

    cursor = nextCursor;
  } while (cursor !== "0");

  const totals = await endSync(redis, keys, audience, syncNumber, clock.now(), "completed");
  if (!totals) return superseded(log, result);

  log.info({ kind: totals.kind, sent: totals.sent, failed: totals.failed }, "sync completed");
  return { ...result, kind: totals.kind, sent: totals.sent, failed: totals.failed };
}

/** Marks a sync failed after its job's last attempt; the members it did not deliver stay pending. */
export async function failSync(deps: Pick<SyncDependencies, "redis" | "config" | "clock">, data: SyncJobData, message: string): Promise<void> {
  const keys = new EngageKeys(new RedisKeys(deps.config.redisPrefix), data.source);
  await endSync(deps.redis, keys, data.audience, data.syncNumber, deps.clock.now(), "failed", message);
}

function superseded(log: Logger, result: SyncResult): SyncResult {
  log.warn("stopped a sync that a later sync of the audience replaced");
  return { ...result, status: "superseded" };
}

function memberError(syncNumber: number, status: number, code: string | undefined, error: string, retryable: boolean, at: number): MemberError {
  return { syncNumber, status, code, error, retryable, at };
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
