import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { EngageConsumer } from "../src/engage/consumer.js";
import { runSync, type SyncDependencies, type SyncJobData } from "../src/engage/sync-runner.js";
import { createLogger } from "../src/logging/logger.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { appendEngage, engageEvent, engageKeys, FakeClock, FakeHydraClient, HOUR_MS, type SentIdentify } from "./engage-helpers.js";

const T0 = Date.parse("2025-03-11T09:00:00.000Z");
const AUDIENCE = "trial_power_users";
const MEMBERS = 1_200;
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let clock: FakeClock;
let hydra: FakeHydraClient;
let deps: SyncDependencies;

const job = (syncNumber: number): SyncJobData => ({ source: "default", audience: AUDIENCE, syncNumber, dueAt: T0, claimedAt: T0 });

beforeEach(async () => {
  redis = testRedis();
  config = testConfig();
  clock = new FakeClock(T0);
  hydra = new FakeHydraClient();
  deps = { redis, config, logger, clock, hydraClient: hydra };

  const consumer = new EngageConsumer({ redis, config, logger, clock });
  await consumer.ensureGroups();
  const events = Array.from({ length: MEMBERS }, (_, i) => engageEvent({ userId: `user-${i}`, key: AUDIENCE, value: true, email: `user-${i}@example.com` }));
  await appendEngage(redis, config, events);
  while ((await consumer.consumeOnce()) > 0);
  clock.set(T0 + 6 * HOUR_MS);
});

afterEach(async () => {
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

function usersOf(requestIndex: number): string[] {
  return hydra.requests[requestIndex].events.map((json) => (JSON.parse(json) as SentIdentify).userId ?? "");
}

function deliveryCounts(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const event of hydra.sent()) counts.set(event.userId ?? "", (counts.get(event.userId ?? "") ?? 0) + 1);
  return counts;
}

describe("sync resumed after a crash", () => {
  it("resends only the batch in flight, under the same ids", async () => {
    hydra.respond = (request, index) => {
      if (index === 1) throw new Error("process stopped after Hydra took the batch");
      return request.events.map(() => ({ status: 200, retryable: false }));
    };
    await expect(runSync(deps, job(1))).rejects.toThrow("process stopped");
    expect(hydra.requests.length).toBe(2);

    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    clock.advance(60_000);
    const result = await runSync(deps, job(1));

    expect(result).toEqual({ status: "completed", source: "default", audience: AUDIENCE, syncNumber: 1, kind: "initial", sent: MEMBERS, failed: 0 });
    const resent = new Set(hydra.requests.slice(2).flatMap((request) => request.events));
    expect(hydra.requests[1].events.filter((json) => !resent.has(json))).toEqual([]);
    const counts = deliveryCounts();
    expect(counts.size).toBe(MEMBERS);
    const twice = [...counts].filter(([, count]) => count > 1).map(([user]) => user).sort();
    expect(twice).toEqual(usersOf(1).sort());
    for (const user of usersOf(0)) expect(counts.get(user)).toBe(1);
    expect(await redis.hlen(engageKeys(config).pending(AUDIENCE))).toBe(0);
  });

  it("sends nothing twice when the crash came before the request", async () => {
    hydra.respond = (request, index) => {
      if (index === 1) {
        hydra.requests.pop();
        throw new Error("process stopped before the request");
      }
      return request.events.map(() => ({ status: 200, retryable: false }));
    };
    await expect(runSync(deps, job(1))).rejects.toThrow("process stopped");

    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    const result = await runSync(deps, job(1));

    expect(result.sent).toBe(MEMBERS);
    const counts = deliveryCounts();
    expect(counts.size).toBe(MEMBERS);
    expect([...counts.values()].every((count) => count === 1)).toBe(true);
  });

  it("keeps the sync time of the first attempt", async () => {
    hydra.respond = (request, index) => {
      if (index === 1) throw new Error("process stopped");
      return request.events.map(() => ({ status: 200, retryable: false }));
    };
    await expect(runSync(deps, job(1))).rejects.toThrow();

    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    clock.advance(HOUR_MS);
    await runSync(deps, job(1));

    expect(new Set(hydra.sent().map((event) => event.timestamp))).toEqual(new Set([new Date(T0 + 6 * HOUR_MS).toISOString()]));
  });

  it("does not resend users rejected before the crash", async () => {
    hydra.respond = (request, index) => {
      if (index === 1) throw new Error("process stopped");
      return request.events.map((_, position) => (index === 0 && position === 0 ? { status: 422, error: "rejected", retryable: false } : { status: 200, retryable: false }));
    };
    await expect(runSync(deps, job(1))).rejects.toThrow();
    const rejectedUser = usersOf(0)[0];

    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    const result = await runSync(deps, job(1));

    expect(deliveryCounts().get(rejectedUser)).toBe(1);
    expect(result).toMatchObject({ sent: MEMBERS - 1, failed: 1 });
    expect(Object.keys(await redis.hgetall(engageKeys(config).pending(AUDIENCE)))).toEqual([`u:${rejectedUser}`]);
  });
});

describe("sync replaced by a later one", () => {
  it("stops the older sync", async () => {
    hydra.respond = (request, index) => {
      if (index === 0) throw new Error("process stopped");
      return request.events.map(() => ({ status: 200, retryable: false }));
    };
    await expect(runSync(deps, job(1))).rejects.toThrow();

    const newer = await runSync(deps, job(2));
    const requestsAfterNewer = hydra.requests.length;
    const older = await runSync(deps, job(1));

    expect(newer).toMatchObject({ status: "completed", syncNumber: 2, kind: "initial", sent: MEMBERS });
    expect(older).toMatchObject({ status: "superseded", syncNumber: 1 });
    expect(hydra.requests.length).toBe(requestsAfterNewer);
  });

  it("skips a sync that already completed", async () => {
    await runSync(deps, job(1));
    const requests = hydra.requests.length;

    expect(await runSync(deps, job(1))).toMatchObject({ status: "already_completed", sent: MEMBERS });
    expect(hydra.requests.length).toBe(requests);
  });
});
