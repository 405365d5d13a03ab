import type { Redis } from "ioredis";

import type { Config, IntervalRange } from "../config/env.js";
import type { Logger } from "../logging/logger.js";
import { RedisKeys } from "../redis/keys.js";
import type { Clock } from "./clock.js";
import { EngageKeys } from "./keys.js";
import { LuaScript } from "./lua-script.js";
import { syncJobOptions, type SyncQueue } from "./sync-queue.js";
import type { SyncJobData } from "./sync-runner.js";

/** Due syncs claimed per source by one script call. */
const CLAIM_LIMIT = 100;

/**
 * A schedule entry written more than this far after the clock's now means the clock
 * jumped back. Smaller differences are taken as clock skew between scheduler hosts.
 */
export const CLOCK_STEP_BACK_TOLERANCE_MS = 60_000;

/**
 * Claims the due syncs of one source, atomically, so two schedulers never claim the same one.
 * KEYS: schedule, schedule-set-at, sync-numbers, jobs-to-add.
 * ARGV: now ms, step-back tolerance ms, source name, claim limit, then one drawn interval
 * in ms per possible claim.
 *
 * 1. Entries written after now + tolerance (the clock jumped back) keep the time that
 *    was left until their sync, counted from now.
 * 2. Each due entry (next sync time <= now) gets the next sync number, its next sync
 *    time (now + a drawn interval) and a job in `jobs-to-add` under the jobId
 *    `<source>-<audience>-sync-<n>`.
 *
 * Returns { entries moved after a clock step back, syncs claimed, flat jobId/data pairs
 * of every job still to add }, the last also holding jobs that an earlier tick claimed
 * but failed to add.
 */
const CLAIM_DUE_LUA = `
local now = tonumber(ARGV[1])
local source = ARGV[3]
local limit = tonumber(ARGV[4])

local moved = 0
local ahead = redis.call('ZRANGEBYSCORE', KEYS[2], string.format('(%d', now + tonumber(ARGV[2])), '+inf', 'WITHSCORES')
for i = 1, #ahead, 2 do
  local audience, set_at = ahead[i], tonumber(ahead[i + 1])
  local next_at = tonumber(redis.call('ZSCORE', KEYS[1], audience))
  if next_at then
    redis.call('ZADD', KEYS[1], now + math.max(next_at - set_at, 0), audience)
  end
  redis.call('ZADD', KEYS[2], now, audience)
  moved = moved + 1
end

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local audience, due_at = due[i], tonumber(due[i + 1])
  local n = redis.call('HINCRBY', KEYS[3], audience, 1)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4 + (i + 1) / 2]), audience)
  redis.call('ZADD', KEYS[2], now, audience)
  local job_id = source .. '-' .. audience .. '-sync-' .. n
  local data = cjson.encode({ source = source, audience = audience, syncNumber = n, dueAt = due_at, claimedAt = now })
  redis.call('HSET', KEYS[4], job_id, data)
end

return { moved, #due / 2, redis.call('HGETALL', KEYS[4]) }
`;

const claimDueScript = new LuaScript(CLAIM_DUE_LUA);

/** Returns an interval drawn uniformly from the range, in whole milliseconds. */
export function drawIntervalMs(range: IntervalRange, random: () => number = Math.random): number {
  return range.minMs + Math.floor(random() * (range.maxMs - range.minMs + 1));
}

export interface SyncSchedulerOptions {
  redis: Redis;
  config: Config;
  logger: Logger;
  clock: Clock;
  queue: SyncQueue;
  /** Source of the interval draws, uniform in [0, 1). @defaultValue Math.random */
  random?: () => number;
}

/**
 * Keeps the sync schedule of every audience in Redis (a sorted set per source of
 * audiences by next sync time, UTC epoch ms) and turns due entries into jobs of the
 * `engage-sync` queue. Time comes from the injected clock, so tests advance days by
 * calling tick() with a clock they move.
 */
export class SyncScheduler {
  private readonly sources: EngageKeys[];
  private readonly random: () => number;

  constructor(private readonly options: SyncSchedulerOptions) {
    const keys = new RedisKeys(options.config.redisPrefix);
    this.sources = options.config.sources.map((source) => new EngageKeys(keys, source.name));
    this.random = options.random ?? Math.random;
  }

  /**
   * Gives every known audience without a schedule entry one: its initial sync time when
   * it never synced, else now + a drawn interval. Entries that exist stay as they are,
   * so running this at every start or deploy creates no second schedule. Returns the
   * number of entries added.
   */
  async registerSchedules(): Promise<number> {
    const { redis, config, clock } = this.options;
    let added = 0;

    for (const source of this.sources) {
      const audiences = await redis.smembers(source.audiences());
      if (audiences.length === 0) continue;

      const scores = await redis.zmscore(source.schedule(), ...audiences);
      for (const [index, audience] of audiences.entries()) {
        if (scores[index] !== null) continue;

        const [firstSeenAt, lastSyncNumber] = await redis.hmget(source.meta(audience), "firstSeenAt", "lastSyncNumber");
        const now = clock.now();
        const nextSyncAt = lastSyncNumber === null ? Number(firstSeenAt ?? now) + config.engageInitialSyncDelayMs : now + drawIntervalMs(config.engageSyncInterval, this.random);
        added += await redis.zadd(source.schedule(), "NX", nextSyncAt, audience);
        await redis.zadd(source.scheduleSetAt(), now, audience);
      }
    }

    if (added > 0) this.options.logger.info({ added }, "registered missing Engage sync schedules");
    return added;
  }

  /**
   * Claims every due sync and adds its job to the queue. A job whose add failed in an
   * earlier tick is added again under the same jobId. Returns the number of jobs added.
   */
  async tick(): Promise<number> {
    let added = 0;
    for (const source of this.sources) {
      for (;;) {
        const { jobs, claimed } = await this.claimDue(source);
        added += await this.addJobs(source, jobs);
        if (claimed < CLAIM_LIMIT) break;
      }
    }
    return added;
  }

  private async claimDue(source: EngageKeys): Promise<{ jobs: [string, SyncJobData][]; claimed: number }> {
    const { redis, config, clock, logger } = this.options;
    const intervals = Array.from({ length: CLAIM_LIMIT }, () => drawIntervalMs(config.engageSyncInterval, this.random));
    const now = clock.now();

    const [moved, claimed, flat] = (await claimDueScript.run(
      redis,
      [source.schedule(), source.scheduleSetAt(), source.syncNumbers(), source.jobsToAdd()],
      [now, CLOCK_STEP_BACK_TOLERANCE_MS, source.source, CLAIM_LIMIT, ...intervals],
    )) as [number, number, string[]];

    if (moved > 0) logger.warn({ source: source.source, schedules: moved, now: new Date(now).toISOString() }, "the clock jumped back; moved Engage sync schedules to keep their remaining wait");

    const jobs: [string, SyncJobData][] = [];
    for (let i = 0; i < flat.length; i += 2) jobs.push([flat[i], JSON.parse(flat[i + 1]) as SyncJobData]);
    return { jobs, claimed };
  }

  private async addJobs(source: EngageKeys, jobs: [string, SyncJobData][]): Promise<number> {
    if (jobs.length === 0) return 0;

    const { queue, config, logger } = this.options;
    await queue.addBulk(jobs.map(([jobId, data]) => ({ name: "sync", data, opts: syncJobOptions(config, jobId) })));
    await this.options.redis.hdel(source.jobsToAdd(), ...jobs.map(([jobId]) => jobId));

    for (const [jobId, data] of jobs) {
      logger.info({ source: data.source, audience: data.audience, syncNumber: data.syncNumber, jobId, dueAt: new Date(data.dueAt).toISOString() }, "Engage sync is due; added its job");
    }
    return jobs.length;
  }
}
