import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { EngageConsumer } from "../src/engage/consumer.js";
import { ENGAGE_GROUP, type EngageKeys } from "../src/engage/keys.js";
import { createLogger } from "../src/logging/logger.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { appendEngage, engageEvent, engageKeys, exampleEngageIdentifies, FakeClock, HOUR_MS } from "./engage-helpers.js";

const T0 = Date.parse("2025-03-11T09:00:00.000Z");
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let clock: FakeClock;
let keys: EngageKeys;
let consumer: EngageConsumer;

beforeEach(async () => {
  redis = testRedis();
  config = testConfig();
  clock = new FakeClock(T0);
  keys = engageKeys(config);
  consumer = new EngageConsumer({ redis, config, logger, clock, claimIdleMs: 0 });
  await consumer.ensureGroups();
});

afterEach(async () => {
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

async function pendingOf(audience: string): Promise<Record<string, string>> {
  return redis.hgetall(keys.pending(audience));
}

async function currentOf(audience: string): Promise<Record<string, string>> {
  return redis.hgetall(keys.current(audience));
}

async function membersOf(audience: string): Promise<number> {
  return Number(await redis.hget(keys.meta(audience), "members"));
}

describe("store with the example events", () => {
  beforeEach(async () => {
    await appendEngage(redis, config, exampleEngageIdentifies().map(({ event }) => event));
    expect(await consumer.consumeOnce()).toBe(23);
  });

  it("keeps the final audience members pending", async () => {
    expect(Object.keys(await pendingOf("trial_power_users")).sort()).toEqual(["u:usr_dprt62ychb", "u:usr_jfhp88nn2w", "u:usr_zcs7z4sv7v"]);
    expect(Object.keys(await pendingOf("churn_risk_accounts")).sort()).toEqual(["u:usr_4vjge4s1d3", "u:usr_fv30b4nj3k"]);
    expect(Object.keys(await pendingOf("expansion_ready")).sort()).toEqual(["u:usr_ppe7qw2647", "u:usr_ze3rpsvd2e"]);
  });

  it("counts members", async () => {
    expect(await membersOf("trial_power_users")).toBe(3);
    expect(await membersOf("churn_risk_accounts")).toBe(2);
    expect(await membersOf("expansion_ready")).toBe(2);
    expect(await membersOf("reports_created_30d")).toBe(3);
    expect(await membersOf("last_feature_used")).toBe(1);
  });

  it("forgets a flip within one window", async () => {
    const current = await currentOf("trial_power_users");
    expect(current["u:usr_t264sjf485"]).toBeUndefined();
    expect((await pendingOf("trial_power_users"))["u:usr_t264sjf485"]).toBeUndefined();
  });

  it("forgets members who entered and left", async () => {
    expect((await currentOf("churn_risk_accounts"))["u:usr_8nsep7f0yv"]).toBeUndefined();
    expect((await currentOf("expansion_ready"))["u:usr_87v65vt5gp"]).toBeUndefined();
  });

  it("keeps the email and timestamp of the last event", async () => {
    const current = await currentOf("trial_power_users");
    expect(current["u:usr_dprt62ychb"]).toBe(`${Date.parse("2025-03-11T17:05:00.090Z")}\thana.kobayashi@cobaltridge.example.com\ttrue`);
  });

  it("keeps computed trait values as JSON", async () => {
    expect(await currentOf("reports_created_30d")).toEqual({
      "u:usr_hndtptxbk1": `${Date.parse("2025-03-11T12:30:00.000Z")}\t\t12`,
      "u:usr_ppe7qw2647": `${Date.parse("2025-03-11T12:30:00.000Z")}\t\t31`,
      "u:usr_dprt62ychb": `${Date.parse("2025-03-11T12:30:00.000Z")}\t\t47`,
    });
    expect(await currentOf("last_feature_used")).toEqual({ "u:usr_82qy73rtda": `${Date.parse("2025-03-11T16:30:00.000Z")}\t\t"scheduled_reports"` });
  });

  it("schedules each initial sync at first sight plus the delay", async () => {
    const schedule = await redis.zrange(keys.schedule(), 0, -1, "WITHSCORES");
    const expectedAt = String(T0 + 6 * HOUR_MS);
    expect(schedule).toEqual([
      "churn_risk_accounts", expectedAt,
      "expansion_ready", expectedAt,
      "last_feature_used", expectedAt,
      "reports_created_30d", expectedAt,
      "trial_power_users", expectedAt,
    ]);
  });

  it("acknowledges every entry", async () => {
    const [count] = (await redis.xpending(keys.stream, ENGAGE_GROUP)) as [number];
    expect(count).toBe(0);
  });
});

describe("store with repeated values", () => {
  it("counts duplicate identifies per email once", async () => {
    await appendEngage(redis, config, [
      engageEvent({ userId: "ben", key: "expansion_ready", value: true, email: "ben@a.example.com" }),
      engageEvent({ userId: "ben", key: "expansion_ready", value: true, email: "ben@b.example.org" }),
    ]);
    await consumer.consumeOnce();

    expect(await pendingOf("expansion_ready")).toEqual({ "u:ben": "" });
    expect(await membersOf("expansion_ready")).toBe(1);
    expect((await currentOf("expansion_ready"))["u:ben"]).toBe(`${Date.parse("2025-03-11T09:05:00.066Z")}\tben@b.example.org\ttrue`);
  });

  it("ignores a repeated false for a non-member", async () => {
    await appendEngage(redis, config, [engageEvent({ userId: "nobody", key: "expansion_ready", value: false })]);
    await consumer.consumeOnce();

    expect(await pendingOf("expansion_ready")).toEqual({});
    expect(await currentOf("expansion_ready")).toEqual({});
    expect(await membersOf("expansion_ready")).toBe(0);
  });
});

describe("store with out-of-order events", () => {
  it("skips an event older than the stored one", async () => {
    await appendEngage(redis, config, [
      engageEvent({ userId: "u1", key: "reports_created_30d", value: 5, computationClass: "trait", timestamp: "2025-03-11T10:00:00.000Z" }),
      engageEvent({ userId: "u1", key: "reports_created_30d", value: 3, computationClass: "trait", timestamp: "2025-03-11T09:00:00.000Z" }),
    ]);
    await consumer.consumeOnce();

    expect((await currentOf("reports_created_30d"))["u:u1"]).toBe(`${Date.parse("2025-03-11T10:00:00.000Z")}\t\t5`);
  });

  it("applies the later of two events with one timestamp", async () => {
    await appendEngage(redis, config, [
      engageEvent({ userId: "u1", key: "last_feature_used", value: "a", computationClass: "computed_trait" }),
      engageEvent({ userId: "u1", key: "last_feature_used", value: "b", computationClass: "computed_trait" }),
    ]);
    await consumer.consumeOnce();

    expect((await currentOf("last_feature_used"))["u:u1"]).toBe(`${Date.parse("2025-03-11T09:05:00.066Z")}\t\t"b"`);
  });
});

describe("store with raw audience names", () => {
  it("stores the snake_case key", async () => {
    const event = engageEvent({ userId: "u1", key: "Order Completed Last 30 Days", value: true });
    await appendEngage(redis, config, [event]);
    await consumer.consumeOnce();

    expect(await redis.smembers(keys.audiences())).toEqual(["order_completed_last_30_days"]);
    expect(await pendingOf("order_completed_last_30_days")).toEqual({ "u:u1": "" });
  });

  it("keeps no raw name in the stored context.personas", async () => {
    await appendEngage(redis, config, [engageEvent({ userId: "u1", key: "Order Completed Last 30 Days", value: true })]);
    await consumer.consumeOnce();

    const personas = JSON.parse((await redis.hget(keys.meta("order_completed_last_30_days"), "personas")) ?? "{}");
    expect(personas.computation_key).toBe("order_completed_last_30_days");
  });

  it("reads the value under the snake_case key", async () => {
    const event = engageEvent({ userId: "u1", key: "order_completed_last_30_days", value: true });
    (event.context as { personas: Record<string, unknown> }).personas.computation_key = "Order Completed Last 30 Days";
    await appendEngage(redis, config, [event]);
    await consumer.consumeOnce();

    expect(await pendingOf("order_completed_last_30_days")).toEqual({ "u:u1": "" });
  });
});

describe("store with anonymous users", () => {
  it("keys members by anonymousId", async () => {
    await appendEngage(redis, config, [engageEvent({ anonymousId: "anon-1", key: "trial_power_users", value: true })]);
    await consumer.consumeOnce();

    expect(await pendingOf("trial_power_users")).toEqual({ "a:anon-1": "" });
  });
});

describe("store with user keys named like entry fields", () => {
  it("reads the event field, not the user key", async () => {
    await appendEngage(redis, config, ["e", "u"].map((userId) => engageEvent({ userId, key: "trial_power_users", value: true })));
    await consumer.consumeOnce();

    expect(await pendingOf("trial_power_users")).toEqual({ "u:e": "", "u:u": "" });
  });
});

describe("store with invalid entries", () => {
  it("skips and acknowledges them", async () => {
    const stream = keys.stream;
    await redis.xadd(stream, "*", "u", "x", "e", "{not json");
    await appendEngage(redis, config, [
      { type: "track", userId: "u1", event: "Audience Entered" },
      engageEvent({ userId: "u1", key: "trial_power_users", value: "yes" }),
      engageEvent({ userId: "u1", key: "trial_power_users", value: true, computationClass: "unknown" }),
      engageEvent({ key: "trial_power_users", value: true }),
      engageEvent({ userId: "u1", key: "!!!", value: true }),
      engageEvent({ userId: "u2", key: "trial_power_users", value: true }),
    ]);

    expect(await consumer.consumeOnce()).toBe(7);
    expect(await pendingOf("trial_power_users")).toEqual({ "u:u2": "" });
    expect(await redis.smembers(keys.audiences())).toEqual(["trial_power_users"]);
    const [count] = (await redis.xpending(stream, ENGAGE_GROUP)) as [number];
    expect(count).toBe(0);
  });
});

describe("consumer with a deleted stream", () => {
  it("creates the group again", async () => {
    await redis.del(keys.stream);

    expect(await consumer.consumeOnce()).toBe(0);
    await appendEngage(redis, config, [engageEvent({ userId: "u1", key: "trial_power_users", value: true })]);
    expect(await consumer.consumeOnce()).toBe(1);
    expect(await pendingOf("trial_power_users")).toEqual({ "u:u1": "" });
  });
});

describe("consumer with a stopped peer", () => {
  it("claims and applies its pending entries", async () => {
    await appendEngage(redis, config, [engageEvent({ userId: "u1", key: "trial_power_users", value: true })]);
    const read = await redis.xreadgroup("GROUP", ENGAGE_GROUP, "stopped-peer", "COUNT", 10, "STREAMS", keys.stream, ">");
    expect(read).not.toBeNull();

    expect(await consumer.consumeOnce()).toBe(1);
    expect(await pendingOf("trial_power_users")).toEqual({ "u:u1": "" });
    const [count] = (await redis.xpending(keys.stream, ENGAGE_GROUP)) as [number];
    expect(count).toBe(0);
  });
});

describe("store with two consumers", () => {
  it("loses no change", async () => {
    const otherRedis = testRedis();
    const first = new EngageConsumer({ redis, config, logger, clock });
    const other = new EngageConsumer({ redis: otherRedis, config, logger, clock });
    try {
      // 1,200 entries are three reads of 500 or fewer, so both consumers get some and
      // their scripts interleave; older events that run late are skipped as stale.
      const events = Array.from({ length: 1_200 }, (_, i) => engageEvent({ userId: `u${i % 100}`, key: "trial_power_users", value: i % 2 === 0, timestamp: new Date(T0 + i).toISOString() }));
      await appendEngage(redis, config, events);

      const counts = await Promise.all([first.consumeOnce(), other.consumeOnce(), first.consumeOnce(), other.consumeOnce()]);
      expect(counts.reduce((sum, count) => sum + count, 0)).toBe(1_200);
      expect(counts.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);

      // Each user's last event (i = 1,100 + user) is true for even users and false for odd ones.
      const expected = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`u:u${i * 2}`, ""]));
      expect(await pendingOf("trial_power_users")).toEqual(expected);
      expect(await membersOf("trial_power_users")).toBe(50);
    } finally {
      await otherRedis.quit();
    }
  });
});
