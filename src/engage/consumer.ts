import { hostname } from "node:os";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { Logger } from "../logging/logger.js";
import { RedisKeys } from "../redis/keys.js";
import type { Clock } from "./clock.js";
import { InvalidEngageEventError } from "./errors.js";
import { ENGAGE_GROUP, EngageKeys } from "./keys.js";
import { parseEngageEntry, type MembershipChange } from "./membership-event.js";
import { applyChanges, type ApplyResult } from "./store.js";
import { trimConsumedStream } from "../batching/stream-trim.js";

/** Entries read from one stream per XREADGROUP or XAUTOCLAIM call. */
const READ_COUNT = 500;

/** A pending entry idle this long belongs to a consumer presumed dead, and is claimed. */
const DEFAULT_CLAIM_IDLE_MS = 60_000;

/** How often the consumer trims the Engage streams to STREAM_RETENTION. */
const TRIM_INTERVAL_MS = 60_000;

type StreamEntry = [id: string, fields: string[] | null];

export interface EngageConsumerOptions {
  redis: Redis;
  config: Config;
  logger: Logger;
  clock: Clock;
  /** Name of this consumer in the group; unique per process. */
  consumerName?: string;
  /** Idle time after which another consumer's pending entries are claimed. @defaultValue 60000 */
  claimIdleMs?: number;
}

/**
 * Reads the Engage streams of every source with the consumer group "engage" and applies
 * each entry to the audience state. An entry is acknowledged in the same Lua call that
 * applies it; entries left pending by a consumer that died are claimed with XAUTOCLAIM.
 */
export class EngageConsumer {
  readonly consumerName: string;
  private readonly sources: EngageKeys[];
  private readonly claimIdleMs: number;
  private lastClaimAt = Number.NEGATIVE_INFINITY;
  private lastTrimAt = Date.now();

  constructor(private readonly options: EngageConsumerOptions) {
    const keys = new RedisKeys(options.config.redisPrefix);
    this.sources = options.config.sources.map((source) => new EngageKeys(keys, source.name));
    this.consumerName = options.consumerName ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.claimIdleMs = options.claimIdleMs ?? DEFAULT_CLAIM_IDLE_MS;
  }

  /** Creates the consumer group on every Engage stream, reading from the stream's start. */
  async ensureGroups(): Promise<void> {
    for (const source of this.sources) {
      try {
        await this.options.redis.xgroup("CREATE", source.stream, ENGAGE_GROUP, "0", "MKSTREAM");
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith("BUSYGROUP")) throw error;
      }
    }
  }

  /**
   * Claims idle entries of dead consumers (at most once per claim interval), then reads
   * and applies the new entries of every source without blocking. Returns the number
   * of entries processed.
   */
  async consumeOnce(): Promise<number> {
    try {
      return await this.readAvailable();
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOGROUP")) throw error;

      // A stream or its group was deleted while the service ran; create them again.
      this.options.logger.warn({ err: error }, "the Engage consumer group is missing; creating it again");
      await this.ensureGroups();
      return 0;
    }
  }

  private async readAvailable(): Promise<number> {
    let processed = 0;

    if (Date.now() - this.lastClaimAt >= Math.min(this.claimIdleMs, DEFAULT_CLAIM_IDLE_MS)) {
      this.lastClaimAt = Date.now();
      for (const source of this.sources) processed += await this.claimIdle(source);
    }

    const reply = await this.options.redis.xreadgroup(
      "GROUP",
      ENGAGE_GROUP,
      this.consumerName,
      "COUNT",
      READ_COUNT,
      "STREAMS",
      ...this.sources.map((source) => source.stream),
      ...this.sources.map(() => ">"),
    );
    processed += await this.processReply(reply as [string, StreamEntry[]][] | null);

    await this.trimIfDue();
    return processed;
  }

  /**
   * Blocks on `blockingRedis` for up to `blockMs` until a stream has new entries, then
   * applies them. Returns the number of entries processed.
   *
   * NOTE: one XREADGROUP over every source's stream needs all of them on one node, so
   * this does not work on Redis Cluster with sources in different slots.
   */
  async consumeBlocking(blockingRedis: Redis, blockMs: number): Promise<number> {
    const reply = await blockingRedis.xreadgroup(
      "GROUP",
      ENGAGE_GROUP,
      this.consumerName,
      "COUNT",
      READ_COUNT,
      "BLOCK",
      blockMs,
      "STREAMS",
      ...this.sources.map((source) => source.stream),
      ...this.sources.map(() => ">"),
    );
    return this.processReply(reply as [string, StreamEntry[]][] | null);
  }

  /**
   * Deletes this consumer from the group when it has no pending entry, so restarts do
   * not pile up consumer names. A consumer with pending entries stays for XAUTOCLAIM.
   */
  async removeIfIdle(): Promise<void> {
    for (const source of this.sources) {
      const pending = (await this.options.redis.xpending(source.stream, ENGAGE_GROUP, "-", "+", 1, this.consumerName)) as unknown[];
      if (pending.length === 0) await this.options.redis.xgroup("DELCONSUMER", source.stream, ENGAGE_GROUP, this.consumerName);
    }
  }

  private async claimIdle(source: EngageKeys): Promise<number> {
    let processed = 0;
    let start = "0-0";

    do {
      const [next, entries] = (await this.options.redis.xautoclaim(
        source.stream,
        ENGAGE_GROUP,
        this.consumerName,
        this.claimIdleMs,
        start,
        "COUNT",
        READ_COUNT,
      )) as [string, StreamEntry[], string[]];
      start = next;

      if (entries.length > 0) {
        this.options.logger.info({ source: source.source, entries: entries.length }, "claimed Engage stream entries of a consumer that stopped");
        processed += await this.processEntries(source, entries);
      }
    } while (start !== "0-0");

    return processed;
  }

  private async processReply(reply: [string, StreamEntry[]][] | null): Promise<number> {
    if (!reply) return 0;

    let processed = 0;
    for (const [stream, entries] of reply) {
      const source = this.sources.find((candidate) => candidate.stream === stream);
      if (source && entries.length > 0) processed += await this.processEntries(source, entries);
    }
    return processed;
  }

  private async processEntries(source: EngageKeys, entries: StreamEntry[]): Promise<number> {
    const changes: MembershipChange[] = [];
    const invalid: InvalidEngageEventError[] = [];

    for (const [id, fields] of entries) {
      // XAUTOCLAIM returns a null body for an entry trimmed while it was pending; there is nothing to apply.
      if (fields === null) continue;

      const parsed = parseEngageEntry(id, fields);
      if (parsed instanceof InvalidEngageEventError) invalid.push(parsed);
      else changes.push(parsed);
    }

    const { config, clock, logger } = this.options;
    const result: ApplyResult = await applyChanges(
      this.options.redis,
      source,
      changes,
      entries.map(([id]) => id),
      clock.now(),
      config.engageInitialSyncDelayMs,
    );

    for (const error of invalid) {
      logger.warn({ source: source.source, entryId: error.entryId, reason: error.reason, err: error }, "skipped an invalid Engage stream entry");
    }
    logger.debug({ source: source.source, entries: entries.length, invalid: invalid.length, ...result }, "applied Engage changes");
    return entries.length;
  }

  /**
   * Trims each Engage stream to STREAM_RETENTION, below the group's oldest pending entry
   * and its last-delivered id, so no entry that the group still needs is removed.
   */
  private async trimIfDue(): Promise<void> {
    if (Date.now() - this.lastTrimAt < TRIM_INTERVAL_MS) return;
    this.lastTrimAt = Date.now();

    for (const source of this.sources) {
      await trimConsumedStream(this.options.redis, source.stream, ENGAGE_GROUP, this.options.config.streamRetentionMs);
    }
  }
}


