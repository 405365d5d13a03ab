import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import { RedisKeys } from "../redis/keys.js";
import type { Clock } from "./clock.js";
import { EngageKeys } from "./keys.js";
import { readSyncPage, type PageContext } from "./sync-page.js";
import { BatchSender } from "./sync-sender.js";
import { beginSync, endSync, type SyncKind } from "./sync-state.js";

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
 * A sync walks the `pending` hash with HSCAN, and the cursor is stored with the batch
 * records, so an attempt that resumes after a crash or a failed request continues
 * there. Delivered members have left `pending` and members rejected in this sync are
 * skipped, so nothing is sent twice within the sync, and a resent batch (a crash
 * between Hydra's response and the record) carries the same messageIds.
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
  const nowMs = () => clock.now();

  const pageContext: PageContext = {
    redis,
    keys,
    source: data.source,
    audience,
    isMembership,
    personasJson: personasJson ?? "",
    syncNumber,
    syncTime: new Date(start.startedAt).toISOString(),
    maxBatchBytes: config.maxBatchBytes,
    nowMs,
  };
  const sender = new BatchSender({
    redis,
    keys,
    hydraClient,
    apiKey: source.hydraApiKey,
    audience,
    isMembership,
    syncNumber,
    maxBatchEvents: config.maxBatchEvents,
    maxBatchBytes: config.maxBatchBytes,
    log,
    nowMs,
  });

  let cursor = start.cursor;
  do {
    const page = await readSyncPage(pageContext, cursor);
    await sender.addPage(page);
    if (sender.superseded) return superseded(log, result, sender);
    cursor = page.nextCursor;
  } while (cursor !== "0");

  await sender.flush();
  if (sender.superseded) return superseded(log, result, sender);

  const totals = await endSync(redis, keys, audience, syncNumber, clock.now(), "completed");
  if (!totals) return superseded(log, result, sender);

  log.info({ kind: totals.kind, sent: totals.sent, failed: totals.failed }, "sync completed");
  return { ...result, kind: totals.kind, sent: totals.sent, failed: totals.failed };
}

/** Marks a sync failed after its job's last attempt; the members it did not deliver stay pending. */
export async function failSync(deps: Pick<SyncDependencies, "redis" | "config" | "clock">, data: SyncJobData, message: string): Promise<void> {
  const keys = new EngageKeys(new RedisKeys(deps.config.redisPrefix), data.source);
  await endSync(deps.redis, keys, data.audience, data.syncNumber, deps.clock.now(), "failed", message);
}

function superseded(log: Logger, result: SyncResult, sender: BatchSender): SyncResult {
  log.warn("stopped a sync that a later sync of the audience replaced");
  return { ...result, status: "superseded", sent: result.sent + sender.sent, failed: result.failed + sender.failed };
}
