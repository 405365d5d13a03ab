import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { listAudiences, startEngageService, type EngageService } from "../src/engage/index.js";
import { syncJobId } from "../src/engage/keys.js";
import { createLogger } from "../src/logging/logger.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { appendEngage, engageEvent, engageKeys, FakeClock, HOUR_MS, seededRandom } from "./engage-helpers.js";

const T0 = Date.parse("2025-03-11T09:00:00.000Z");
const MINUTE_MS = 60_000;
const DAY_MS = 24 * HOUR_MS;
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let clock: FakeClock;
const services: EngageService[] = [];

/** Starts a scheduler and consumer without a worker, so the jobs it adds stay in the queue to read. */
async function startScheduler(overrides: Record<string, string> = {}, seed = 1, connection: Redis = redis): Promise<EngageService> {
  const serviceConfig = testConfig({ REDIS_PREFIX: config.redisPrefix, ...overrides });
  const service = await startEngageService({ config: serviceConfig, redis: connection, logger, clock, roles: ["consumer", "scheduler"], runLoops: false, random: seededRandom(seed) });
  services.push(service);
  return service;
}

beforeEach(() => {
  redis = testRedis();
  config = testConfig();
  clock = new FakeClock(T0);
});

afterEach(async () => {
  for (const service of services.splice(0)) await service.close();
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

async function seeAudience(service: EngageService, audience: string, atMs: number): Promise<void> {
  clock.set(atMs);
  await appendEngage(redis, config, [engageEvent({ userId: "ann", key: audience, value: true })]);
  await service.consumeOnce();
}

async function jobIds(service: EngageService): Promise<string[]> {
  const jobs = await service.queue.getJobs(["waiting", "active", "delayed", "prioritized", "completed", "failed"]);
  return jobs.map((job) => job.id ?? "").sort();
}

async function nextSyncAt(audience: string): Promise<number | null> {
  const score = await redis.zscore(engageKeys(config).schedule(), audience);
  return score === null ? null : Number(score);
}

async function tickAt(service: EngageService, ms: number): Promise<number> {
  clock.set(ms);
  return service.tick();
}

describe("schedule over several days", () => {
  it("keeps every interval within the range", async () => {
    const service = await startScheduler();
    const firstSeen = { trial_power_users: T0, churn_risk_accounts: T0 + 97 * MINUTE_MS };
    await seeAudience(service, "trial_power_users", firstSeen.trial_power_users);
    await seeAudience(service, "churn_risk_accounts", firstSeen.churn_risk_accounts);

    const syncTimes: Record<string, number[]> = { trial_power_users: [], churn_risk_accounts: [] };
    for (;;) {
      const due = await redis.zrange(engageKeys(config).schedule(), 0, 0, "WITHSCORES");
      const dueAt = Number(due[1]);
      if (dueAt > T0 + 4 * DAY_MS) break;

      expect(await tickAt(service, dueAt - 1)).toBe(0);
      expect(await tickAt(service, dueAt)).toBe(1);
      syncTimes[due[0]].push(dueAt);

      const next = await nextSyncAt(due[0]);
      expect(next).toBeGreaterThanOrEqual(dueAt + 2 * HOUR_MS);
      expect(next).toBeLessThanOrEqual(dueAt + 3 * HOUR_MS);
    }

    for (const [audience, times] of Object.entries(syncTimes)) {
      expect(times[0]).toBe(firstSeen[audience as keyof typeof firstSeen] + 6 * HOUR_MS);
      const gaps = times.slice(1).map((time, index) => time - times[index]);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(2 * HOUR_MS);
      expect(Math.max(...gaps)).toBeLessThanOrEqual(3 * HOUR_MS);
      expect(times.length).toBeGreaterThanOrEqual(Math.floor((4 * DAY_MS - 6 * HOUR_MS - 97 * MINUTE_MS) / (3 * HOUR_MS)));
    }
    const ids = await jobIds(service);
    expect(ids.length).toBe(syncTimes.trial_power_users.length + syncTimes.churn_risk_accounts.length);
    expect(ids).toContain(syncJobId("default", "trial_power_users", syncTimes.trial_power_users.length));
    expect(ids).toContain(syncJobId("default", "churn_risk_accounts", syncTimes.churn_risk_accounts.length));
  });

  it("spreads audiences seen together", async () => {
    const service = await startScheduler({}, 9);
    for (const audience of ["a1", "a2", "a3", "a4"]) await seeAudience(service, audience, T0);
    await tickAt(service, T0 + 6 * HOUR_MS);

    const next = await Promise.all(["a1", "a2", "a3", "a4"].map((audience) => nextSyncAt(audience)));
    expect(new Set(next).size).toBe(4);
  });
});

describe("schedule with late ticks", () => {
  it("runs one sync and counts the interval from the tick", async () => {
    const service = await startScheduler();
    await seeAudience(service, "trial_power_users", T0);

    const late = T0 + 11 * HOUR_MS;
    expect(await tickAt(service, late)).toBe(1);
    expect(await service.tick()).toBe(0);

    const next = (await nextSyncAt("trial_power_users")) ?? 0;
    expect(next - late).toBeGreaterThanOrEqual(2 * HOUR_MS);
    expect(next - late).toBeLessThanOrEqual(3 * HOUR_MS);
    const job = await service.queue.getJob(syncJobId("default", "trial_power_users", 1));
    expect(job?.data).toEqual({ source: "default", audience: "trial_power_users", syncNumber: 1, dueAt: T0 + 6 * HOUR_MS, claimedAt: late });
  });
});

describe("schedule with a clock that jumps back", () => {
  it("keeps the remaining wait", async () => {
    const service = await startScheduler();
    await seeAudience(service, "trial_power_users", T0);
    await tickAt(service, T0 + 6 * HOUR_MS);
    const wait = ((await nextSyncAt("trial_power_users")) ?? 0) - (T0 + 6 * HOUR_MS);

    const back = T0 + 6 * HOUR_MS - DAY_MS;
    expect(await tickAt(service, back)).toBe(0);
    expect(await nextSyncAt("trial_power_users")).toBe(back + wait);

    expect(await tickAt(service, back + wait - 1)).toBe(0);
    expect(await tickAt(service, back + wait)).toBe(1);
    expect(await jobIds(service)).toEqual([syncJobId("default", "trial_power_users", 1), syncJobId("default", "trial_power_users", 2)]);
  });

  it("ignores a step back within the tolerance", async () => {
    const service = await startScheduler();
    await seeAudience(service, "trial_power_users", T0);
    await tickAt(service, T0 + 6 * HOUR_MS);
    const next = await nextSyncAt("trial_power_users");

    expect(await tickAt(service, T0 + 6 * HOUR_MS - 30_000)).toBe(0);
    expect(await nextSyncAt("trial_power_users")).toBe(next);
  });

  it("moves an initial sync too", async () => {
    const service = await startScheduler();
    await seeAudience(service, "trial_power_users", T0);

    const back = T0 - 2 * HOUR_MS;
    await tickAt(service, back);
    expect(await nextSyncAt("trial_power_users")).toBe(back + 6 * HOUR_MS);
  });
});

describe("schedule registration", () => {
  it("creates no second schedule at restart", async () => {
    const first = await startScheduler();
    await seeAudience(first, "trial_power_users", T0);
    await first.close();

    clock.set(T0 + HOUR_MS);
    const second = await startScheduler();
    const third = await startScheduler();

    expect(await redis.zrange(engageKeys(config).schedule(), 0, -1, "WITHSCORES")).toEqual(["trial_power_users", String(T0 + 6 * HOUR_MS)]);
    expect(await tickAt(second, T0 + 6 * HOUR_MS)).toBe(1);
    expect(await third.tick()).toBe(0);
    expect(await jobIds(second)).toEqual([syncJobId("default", "trial_power_users", 1)]);
  });

  it("restores a missing schedule entry", async () => {
    const first = await startScheduler();
    await seeAudience(first, "trial_power_users", T0);
    await redis.zrem(engageKeys(config).schedule(), "trial_power_users");

    clock.set(T0 + HOUR_MS);
    await startScheduler();
    expect(await nextSyncAt("trial_power_users")).toBe(T0 + 6 * HOUR_MS);
  });

  it("restores a synced audience's entry one interval ahead", async () => {
    const first = await startScheduler();
    await seeAudience(first, "trial_power_users", T0);
    await redis.hset(engageKeys(config).meta("trial_power_users"), "lastSyncNumber", "1");
    await redis.zrem(engageKeys(config).schedule(), "trial_power_users");

    clock.set(T0 + DAY_MS);
    await startScheduler();
    const next = (await nextSyncAt("trial_power_users")) ?? 0;
    expect(next - (T0 + DAY_MS)).toBeGreaterThanOrEqual(2 * HOUR_MS);
    expect(next - (T0 + DAY_MS)).toBeLessThanOrEqual(3 * HOUR_MS);
  });
});

describe("schedule with two schedulers", () => {
  it("claims each sync once", async () => {
    const otherRedis = testRedis();
    const first = await startScheduler({}, 1);
    const second = await startScheduler({}, 2, otherRedis);
    const audiences = Array.from({ length: 50 }, (_, i) => `audience_${i}`);
    clock.set(T0);
    await appendEngage(redis, config, audiences.map((audience) => engageEvent({ userId: "ann", key: audience, value: true })));
    await first.consumeOnce();

    clock.set(T0 + 6 * HOUR_MS);
    await Promise.all(Array.from({ length: 5 }, () => [first.tick(), second.tick()]).flat());

    expect(await jobIds(first)).toEqual(audiences.map((audience) => syncJobId("default", audience, 1)).sort());
    expect(new Set(Object.values(await redis.hgetall(engageKeys(config).syncNumbers())))).toEqual(new Set(["1"]));
    expect(await redis.hlen(engageKeys(config).jobsToAdd())).toBe(0);
    await second.close();
    await otherRedis.quit();
  });
});

describe("schedule with a changed interval", () => {
  it("applies from the next sync", async () => {
    const before = await startScheduler({ ENGAGE_SYNC_INTERVAL: "2h-3h" });
    await seeAudience(before, "trial_power_users", T0);
    await tickAt(before, T0 + 6 * HOUR_MS);
    const planned = (await nextSyncAt("trial_power_users")) ?? 0;
    await before.close();

    const after = await startScheduler({ ENGAGE_SYNC_INTERVAL: "10m-20m" });
    expect(await nextSyncAt("trial_power_users")).toBe(planned);
    expect(await tickAt(after, planned - 1)).toBe(0);
    expect(await tickAt(after, planned)).toBe(1);

    const next = (await nextSyncAt("trial_power_users")) ?? 0;
    expect(next - planned).toBeGreaterThanOrEqual(10 * MINUTE_MS);
    expect(next - planned).toBeLessThanOrEqual(20 * MINUTE_MS);
  });
});

describe("schedule with many due audiences", () => {
  it("adds every due sync in one tick", async () => {
    const service = await startScheduler();
    const audiences = Array.from({ length: 150 }, (_, i) => `audience_${i}`);
    await appendEngage(redis, config, audiences.map((audience) => engageEvent({ userId: "ann", key: audience, value: true })));
    await service.consumeOnce();

    expect(await tickAt(service, T0 + 6 * HOUR_MS)).toBe(150);
    expect((await jobIds(service)).length).toBe(150);
  });
});

describe("schedule with a job left unadded", () => {
  it("adds it at the next tick", async () => {
    const service = await startScheduler();
    const jobId = syncJobId("default", "trial_power_users", 3);
    const data = { source: "default", audience: "trial_power_users", syncNumber: 3, dueAt: T0, claimedAt: T0 };
    await redis.hset(engageKeys(config).jobsToAdd(), jobId, JSON.stringify(data));

    expect(await service.tick()).toBe(1);
    expect((await service.queue.getJob(jobId))?.data).toEqual(data);
    expect(await redis.hlen(engageKeys(config).jobsToAdd())).toBe(0);
  });
});

describe("audience list", () => {
  it("shows the next sync time", async () => {
    const service = await startScheduler();
    await seeAudience(service, "trial_power_users", T0);

    const [summary] = await listAudiences(redis, config);
    expect(summary).toEqual({
      source: "default",
      audience: "trial_power_users",
      type: "audience",
      computationId: "aud_trial_power_users",
      members: 1,
      pending: 1,
      rejected: 0,
      firstSeenAt: T0,
      lastSync: null,
      currentSync: null,
      nextSyncAt: T0 + 6 * HOUR_MS,
    });
  });
});
