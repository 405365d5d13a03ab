import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { listAudiences, startEngageService, type EngageService, type SyncCompletedEvent, type SyncFailedEvent } from "../src/engage/index.js";
import { ENVELOPE_BYTES, syncMessageId } from "../src/engage/sync-events.js";
import { DeliveryError } from "../src/errors/delivery-error.js";
import { createLogger } from "../src/logging/logger.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import {
  appendEngage,
  engageEvent,
  engageKeys,
  exampleEngageIdentifies,
  FakeClock,
  FakeHydraClient,
  HOUR_MS,
  seededRandom,
  valuesOf,
  type SentIdentify,
} from "./engage-helpers.js";

const T0 = Date.parse("2025-03-11T09:00:00.000Z");
const MINUTE_MS = 60_000;
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let clock: FakeClock;
let hydra: FakeHydraClient;
let service: EngageService;
let completed: SyncCompletedEvent[];
let failed: SyncFailedEvent[];

async function start(overrides: Record<string, string> = {}): Promise<void> {
  config = testConfig({ HYDRA_BACKOFF_BASE: "1", HYDRA_BACKOFF_MAX: "5", ...overrides });
  service = await startEngageService({ config, redis, logger, hydraClient: hydra, clock, runLoops: false, random: seededRandom(42) });
  service.events.on("sync:completed", (event: SyncCompletedEvent) => completed.push(event));
  service.events.on("sync:failed", (event: SyncFailedEvent) => failed.push(event));
}

beforeEach(() => {
  redis = testRedis();
  clock = new FakeClock(T0);
  hydra = new FakeHydraClient();
  completed = [];
  failed = [];
});

afterEach(async () => {
  await service?.close();
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the syncs to settle");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sets the clock, ticks, and waits until every job added has completed or failed for good. */
async function syncAt(ms: number): Promise<SyncCompletedEvent[]> {
  clock.set(ms);
  const completedBefore = completed.length;
  const failedBefore = failed.filter((event) => !event.willRetry).length;
  const added = await service.tick();
  await waitUntil(() => completed.length - completedBefore + failed.filter((event) => !event.willRetry).length - failedBefore >= added);
  return completed.slice(completedBefore).sort((a, b) => a.audience.localeCompare(b.audience));
}

async function feed(events: Record<string, unknown>[], atMs = clock.now()): Promise<void> {
  clock.set(atMs);
  await appendEngage(redis, config, events);
  while ((await service.consumeOnce()) > 0);
}

function exampleLines(from: number, to: number): Record<string, unknown>[] {
  return exampleEngageIdentifies()
    .filter(({ line }) => line >= from && line <= to)
    .map(({ event }) => event);
}

async function nextSyncAt(audience: string): Promise<number> {
  const summary = (await listAudiences(redis, config)).find((candidate) => candidate.audience === audience);
  if (!summary?.nextSyncAt) throw new Error(`no schedule for ${audience}`);
  return summary.nextSyncAt;
}

const TRIAL_PERSONAS = {
  computation_class: "audience",
  computation_id: "aud_rr1qzfRBMl9ydnaFwkrLJ5PvtJf",
  computation_key: "trial_power_users",
  namespace: "spa_MzZU4A6RlqtJsuloHD6iK0",
  space_id: "spa_MzZU4A6RlqtJsuloHD6iK0",
};

describe("sync of the example day", () => {
  beforeEach(async () => {
    await start();
    await feed(exampleLines(40, 96), T0);
    await feed(exampleLines(107, 134), T0 + 5 * HOUR_MS);
  });

  it("sends nothing before the initial sync time", async () => {
    expect(await syncAt(T0 + 6 * HOUR_MS - 1)).toEqual([]);
    expect(hydra.requests).toEqual([]);
  });

  it("sends every current member in the initial sync", async () => {
    const syncs = await syncAt(T0 + 6 * HOUR_MS);

    expect(syncs).toEqual([
      { source: "default", audience: "churn_risk_accounts", syncNumber: 1, sent: 2, failed: 0, kind: "initial" },
      { source: "default", audience: "expansion_ready", syncNumber: 1, sent: 2, failed: 0, kind: "initial" },
      { source: "default", audience: "reports_created_30d", syncNumber: 1, sent: 3, failed: 0, kind: "initial" },
      { source: "default", audience: "trial_power_users", syncNumber: 1, sent: 2, failed: 0, kind: "initial" },
    ]);
    const sent = hydra.sent();
    expect(valuesOf(sent.filter((event) => "trial_power_users" in event.traits), "trial_power_users")).toEqual(["usr_jfhp88nn2w=true", "usr_zcs7z4sv7v=true"]);
    expect(valuesOf(sent.filter((event) => "churn_risk_accounts" in event.traits), "churn_risk_accounts")).toEqual(["usr_4vjge4s1d3=true", "usr_fv30b4nj3k=true"]);
    expect(valuesOf(sent.filter((event) => "expansion_ready" in event.traits), "expansion_ready")).toEqual(["usr_ppe7qw2647=true", "usr_ze3rpsvd2e=true"]);
    expect(valuesOf(sent.filter((event) => "reports_created_30d" in event.traits), "reports_created_30d")).toEqual([
      "usr_dprt62ychb=47",
      "usr_hndtptxbk1=12",
      "usr_ppe7qw2647=31",
    ]);
  });

  it("builds the identify events", async () => {
    await syncAt(T0 + 6 * HOUR_MS);

    const finn = hydra.sent().find((event) => event.userId === "usr_jfhp88nn2w");
    expect(finn).toEqual({
      type: "identify",
      userId: "usr_jfhp88nn2w",
      messageId: syncMessageId({ source: "default", audience: "trial_power_users", member: "u:usr_jfhp88nn2w", valueJson: "true", syncNumber: 1 }),
      traits: { trial_power_users: true, email: "finn.oconnell@cobaltridge.example.com" },
      context: { personas: TRIAL_PERSONAS },
      timestamp: "2025-03-11T15:00:00.000Z",
      receivedAt: "2025-03-11T15:00:00.000Z",
    });
    expect(finn?.messageId).toMatch(/^personas_sync_[0-9a-f]{32}$/);
  });

  it("sends computed traits without an email", async () => {
    await syncAt(T0 + 6 * HOUR_MS);

    const trait = hydra.sent().find((event) => event.userId === "usr_hndtptxbk1");
    expect(trait?.traits).toEqual({ reports_created_30d: 12 });
    expect(trait?.context.personas?.computation_class).toBe("trait");
  });

  it("sends one request per audience sync", async () => {
    await syncAt(T0 + 6 * HOUR_MS);

    expect(hydra.requests.map((request) => request.events.length).sort()).toEqual([2, 2, 2, 3]);
    expect(new Set(hydra.requests.map((request) => request.apiKey))).toEqual(new Set(["test-hydra-key"]));
  });

  it("sends only the changes in the delta sync", async () => {
    await syncAt(T0 + 6 * HOUR_MS);
    await feed(exampleLines(151, 156), T0 + 8 * HOUR_MS + 5 * MINUTE_MS);

    const trialAt = await nextSyncAt("trial_power_users");
    const requestsBefore = hydra.requests.length;
    const syncs = await syncAt(trialAt);

    expect(syncs.find((sync) => sync.audience === "trial_power_users")).toEqual({
      source: "default",
      audience: "trial_power_users",
      syncNumber: 2,
      sent: 1,
      failed: 0,
      kind: "delta",
    });
    const delta = hydra.sentSince(requestsBefore).filter((event) => "trial_power_users" in event.traits);
    expect(valuesOf(delta, "trial_power_users")).toEqual(["usr_dprt62ychb=true"]);
    expect(delta[0].traits.email).toBe("hana.kobayashi@cobaltridge.example.com");
  });

  it("gives a new computed trait its own initial sync", async () => {
    await syncAt(T0 + 6 * HOUR_MS);
    const seenAt = T0 + 7 * HOUR_MS + 30 * MINUTE_MS;
    await feed(exampleLines(151, 151), seenAt);

    expect(await nextSyncAt("last_feature_used")).toBe(seenAt + 6 * HOUR_MS);
    const requestsBefore = hydra.requests.length;
    const syncs = await syncAt(seenAt + 6 * HOUR_MS);

    expect(syncs.find((sync) => sync.audience === "last_feature_used")).toEqual({
      source: "default",
      audience: "last_feature_used",
      syncNumber: 1,
      sent: 1,
      failed: 0,
      kind: "initial",
    });
    const sent = hydra.sentSince(requestsBefore).filter((event) => "last_feature_used" in event.traits);
    expect(valuesOf(sent, "last_feature_used")).toEqual(['usr_82qy73rtda="scheduled_reports"']);
  });

  it("runs empty delta syncs without requests", async () => {
    await syncAt(T0 + 6 * HOUR_MS);
    const requestsBefore = hydra.requests.length;
    const syncs = await syncAt(await nextSyncAt("expansion_ready"));

    expect(syncs.find((sync) => sync.audience === "expansion_ready")).toEqual({
      source: "default",
      audience: "expansion_ready",
      syncNumber: 2,
      sent: 0,
      failed: 0,
      kind: "delta",
    });
    expect(hydra.sentSince(requestsBefore).filter((event) => "expansion_ready" in event.traits)).toEqual([]);
  });
});

describe("sync of membership changes", () => {
  const AUDIENCE = "trial_power_users";
  const at = (hours: number) => new Date(T0 + hours * HOUR_MS).toISOString();

  beforeEach(async () => {
    await start();
    await feed([
      engageEvent({ userId: "ann", key: AUDIENCE, value: true, email: "ann@example.com", timestamp: at(0) }),
      engageEvent({ userId: "bob", key: AUDIENCE, value: true, email: "bob@example.com", timestamp: at(0) }),
    ]);
    await syncAt(T0 + 6 * HOUR_MS);
    hydra.requests.length = 0;
  });

  it("sends nothing for a flip between syncs", async () => {
    await feed([
      engageEvent({ userId: "ann", key: AUDIENCE, value: false, timestamp: at(6.5) }),
      engageEvent({ userId: "ann", key: AUDIENCE, value: true, timestamp: at(7) }),
      engageEvent({ userId: "cid", key: AUDIENCE, value: true, timestamp: at(6.5) }),
      engageEvent({ userId: "cid", key: AUDIENCE, value: false, timestamp: at(7) }),
    ]);
    const [sync] = await syncAt(await nextSyncAt(AUDIENCE));

    expect(sync).toMatchObject({ syncNumber: 2, sent: 0, kind: "delta" });
    expect(hydra.requests).toEqual([]);
  });

  it("sends a leave as false with the email", async () => {
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: false, email: "bob@example.com", timestamp: at(7) })]);
    await syncAt(await nextSyncAt(AUDIENCE));

    const sent = hydra.sent();
    expect(valuesOf(sent, AUDIENCE)).toEqual(["bob=false"]);
    expect(sent[0].traits).toEqual({ [AUDIENCE]: false, email: "bob@example.com" });
  });

  it("sends a re-entry after a synced leave", async () => {
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: false, timestamp: at(7) })]);
    await syncAt(await nextSyncAt(AUDIENCE));
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: true, email: "bob@example.org", timestamp: at(9) })]);
    const requestsBefore = hydra.requests.length;
    const [sync] = await syncAt(await nextSyncAt(AUDIENCE));

    expect(sync).toMatchObject({ syncNumber: 3, sent: 1 });
    const sent = hydra.sentSince(requestsBefore);
    expect(valuesOf(sent, AUDIENCE)).toEqual(["bob=true"]);
    expect(sent[0].traits.email).toBe("bob@example.org");
  });

  it("counts duplicate identifies per email once", async () => {
    await feed([
      engageEvent({ userId: "dan", key: AUDIENCE, value: true, email: "dan@work.example.com", timestamp: at(7) }),
      engageEvent({ userId: "dan", key: AUDIENCE, value: true, email: "dan@home.example.org", timestamp: at(7) }),
    ]);
    const [sync] = await syncAt(await nextSyncAt(AUDIENCE));

    expect(sync).toMatchObject({ sent: 1 });
    expect(hydra.sent().map((event) => event.traits)).toEqual([{ [AUDIENCE]: true, email: "dan@home.example.org" }]);
  });

  it("sends a change again in each later sync with a new messageId", async () => {
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: false, timestamp: at(7) })]);
    await syncAt(await nextSyncAt(AUDIENCE));
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: true, timestamp: at(9) })]);
    await syncAt(await nextSyncAt(AUDIENCE));

    const ids = hydra.sent().map((event) => event.messageId);
    expect(ids).toEqual([
      syncMessageId({ source: "default", audience: AUDIENCE, member: "u:bob", valueJson: "false", syncNumber: 2 }),
      syncMessageId({ source: "default", audience: AUDIENCE, member: "u:bob", valueJson: "true", syncNumber: 3 }),
    ]);
  });
});

describe("sync of a computed trait", () => {
  it("sends the latest value", async () => {
    await start();
    const trait = (userId: string, value: unknown, hours: number) =>
      engageEvent({ userId, key: "reports_created_30d", value, computationClass: "trait", timestamp: new Date(T0 + hours * HOUR_MS).toISOString() });
    await feed([trait("u1", 3, 0)]);
    await syncAt(T0 + 6 * HOUR_MS);
    await feed([trait("u1", 12, 6.5), trait("u1", 31, 7), trait("u1", 47, 7.5), trait("u2", 5, 7), trait("u2", 5, 7.5)]);
    const requestsBefore = hydra.requests.length;
    const [sync] = await syncAt(await nextSyncAt("reports_created_30d"));

    expect(sync).toMatchObject({ syncNumber: 2, sent: 2, kind: "delta" });
    expect(valuesOf(hydra.sentSince(requestsBefore), "reports_created_30d")).toEqual(["u1=47", "u2=5"]);
  });

  it("sends nothing when the value returns to the synced one", async () => {
    await start();
    const trait = (value: unknown, hours: number) =>
      engageEvent({ userId: "u1", key: "plan_tier", value, computationClass: "trait", timestamp: new Date(T0 + hours * HOUR_MS).toISOString() });
    await feed([trait("gold", 0)]);
    await syncAt(T0 + 6 * HOUR_MS);
    await feed([trait("silver", 6.5), trait("gold", 7)]);
    const requestsBefore = hydra.requests.length;
    const [sync] = await syncAt(await nextSyncAt("plan_tier"));

    expect(sync).toMatchObject({ syncNumber: 2, sent: 0 });
    expect(hydra.requests.length).toBe(requestsBefore);
  });
});

describe("sync with partial results", () => {
  const AUDIENCE = "expansion_ready";

  beforeEach(async () => {
    await start();
    await feed(["ann", "bob", "cid"].map((userId) => engageEvent({ userId, key: AUDIENCE, value: true })));
    hydra.respond = (request) =>
      request.events.map((json) =>
        (JSON.parse(json) as SentIdentify).userId === "bob"
          ? { status: 400, error: "traits.email is invalid", retryable: false, code: "bad_request" as const }
          : { status: 200, retryable: false },
      );
  });

  it("keeps rejected users pending with the error", async () => {
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toEqual({ source: "default", audience: AUDIENCE, syncNumber: 1, sent: 2, failed: 1, kind: "initial" });
    const keys = engageKeys(config);
    expect(await redis.hgetall(keys.pending(AUDIENCE))).toEqual({ "u:bob": "" });
    const error = JSON.parse((await redis.hget(keys.errors(AUDIENCE), "u:bob")) ?? "{}");
    expect(error).toEqual({ syncNumber: 1, status: 400, code: "bad_request", error: "traits.email is invalid", retryable: false, at: T0 + 6 * HOUR_MS });
  });

  it("shows them in the audience list", async () => {
    await syncAt(T0 + 6 * HOUR_MS);

    const [summary] = await listAudiences(redis, config);
    expect(summary).toMatchObject({ audience: AUDIENCE, members: 3, pending: 1, rejected: 1 });
    expect(summary.lastSync).toEqual({ syncNumber: 1, kind: "initial", startedAt: T0 + 6 * HOUR_MS, finishedAt: T0 + 6 * HOUR_MS, sent: 2, failed: 1 });
  });

  it("sends them in the next sync", async () => {
    await syncAt(T0 + 6 * HOUR_MS);
    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    const requestsBefore = hydra.requests.length;
    const [sync] = await syncAt(await nextSyncAt(AUDIENCE));

    expect(sync).toMatchObject({ syncNumber: 2, sent: 1, failed: 0 });
    expect(valuesOf(hydra.sentSince(requestsBefore), AUDIENCE)).toEqual(["bob=true"]);
    const keys = engageKeys(config);
    expect(await redis.hlen(keys.pending(AUDIENCE))).toBe(0);
    expect(await redis.hlen(keys.errors(AUDIENCE))).toBe(0);
  });

  it("drops the error when the change cancels out", async () => {
    await syncAt(T0 + 6 * HOUR_MS);
    await feed([engageEvent({ userId: "bob", key: AUDIENCE, value: false, timestamp: new Date(T0 + 7 * HOUR_MS).toISOString() })]);

    const keys = engageKeys(config);
    expect(await redis.hlen(keys.pending(AUDIENCE))).toBe(0);
    expect(await redis.hlen(keys.errors(AUDIENCE))).toBe(0);
  });
});

describe("sync with Hydra down", () => {
  const AUDIENCE = "churn_risk_accounts";

  beforeEach(async () => {
    await start();
    await feed(["ann", "bob"].map((userId) => engageEvent({ userId, key: AUDIENCE, value: true })));
  });

  it("keeps every change pending after the last attempt", async () => {
    hydra.respond = () => {
      throw new DeliveryError("Hydra answered 503", "transient", true, 503);
    };
    expect(await syncAt(T0 + 6 * HOUR_MS)).toEqual([]);

    expect(failed.map((event) => event.willRetry)).toEqual([true, true, true, true, true, true, true, false]);
    expect(failed[7]).toEqual({ source: "default", audience: AUDIENCE, syncNumber: 1, error: "Hydra answered 503", willRetry: false });
    const [summary] = await listAudiences(redis, config);
    expect(summary).toMatchObject({ pending: 2, lastSync: null });
    expect(summary.currentSync).toEqual({ syncNumber: 1, state: "failed", sent: 0, failed: 0, error: "Hydra answered 503" });
  });

  it("delivers in the next sync once Hydra is back", async () => {
    hydra.respond = () => {
      throw new DeliveryError("Hydra answered 503", "transient", true, 503);
    };
    await syncAt(T0 + 6 * HOUR_MS);
    hydra.respond = (request) => request.events.map(() => ({ status: 200, retryable: false }));
    const requestsBefore = hydra.requests.length;
    const [sync] = await syncAt(await nextSyncAt(AUDIENCE));

    expect(sync).toEqual({ source: "default", audience: AUDIENCE, syncNumber: 2, sent: 2, failed: 0, kind: "initial" });
    expect(valuesOf(hydra.sentSince(requestsBefore), AUDIENCE)).toEqual(["ann=true", "bob=true"]);
  });

  it("retries a failed request with the same messageIds", async () => {
    hydra.respond = (request, index) => {
      if (index === 0) throw new DeliveryError("Hydra answered 429", "rate_limited", true, 429);
      return request.events.map(() => ({ status: 200, retryable: false }));
    };
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toMatchObject({ syncNumber: 1, sent: 2 });
    expect(hydra.requests.length).toBe(2);
    expect(hydra.requests[1].events).toEqual(hydra.requests[0].events);
    expect(hydra.requests[1].idempotencyKey).toBe(hydra.requests[0].idempotencyKey);
  });

  it("fails at once on a request Hydra will never take", async () => {
    hydra.respond = () => {
      throw new DeliveryError("Hydra answered 400", "bad_request", false, 400);
    };
    await syncAt(T0 + 6 * HOUR_MS);

    expect(failed).toEqual([{ source: "default", audience: AUDIENCE, syncNumber: 1, error: "Hydra answered 400", willRetry: false }]);
    expect(hydra.requests.length).toBe(1);
  });
});

describe("sync with size limits", () => {
  it("splits batches by event count", async () => {
    await start({ BATCH_MAX_EVENTS: "2" });
    await feed(["a", "b", "c", "d", "e"].map((userId) => engageEvent({ userId, key: "trial_power_users", value: true })));
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toMatchObject({ sent: 5 });
    expect(hydra.requests.map((request) => request.events.length)).toEqual([2, 2, 1]);
  });

  it("splits batches by bytes", async () => {
    await start({ BATCH_MAX_BYTES: "2048" });
    await feed(Array.from({ length: 10 }, (_, i) => engageEvent({ userId: `user-${i}`, key: "trial_power_users", value: true, email: `user-${i}@example.com` })));
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toMatchObject({ sent: 10 });
    const room = 2048 - ENVELOPE_BYTES;
    const used = hydra.requests.map((request) => request.events.reduce((sum, json) => sum + Buffer.byteLength(json) + 1, 0));
    expect(hydra.requests.length).toBeGreaterThan(1);
    hydra.requests.forEach((request, index) => {
      expect(used[index]).toBeLessThanOrEqual(room);
      const next = hydra.requests[index + 1];
      if (next) expect(used[index] + Buffer.byteLength(next.events[0]) + 1).toBeGreaterThan(room);
    });
  });

  it("keeps an event larger than a request pending", async () => {
    await start({ BATCH_MAX_BYTES: "1024" });
    await feed([
      engageEvent({ userId: "big", key: "notes", value: "x".repeat(2_000), computationClass: "trait" }),
      engageEvent({ userId: "small", key: "notes", value: "y", computationClass: "trait" }),
    ]);
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toMatchObject({ sent: 1, failed: 1 });
    const error = JSON.parse((await redis.hget(engageKeys(config).errors("notes"), "u:big")) ?? "{}");
    expect(error).toMatchObject({ syncNumber: 1, status: 413, code: "payload_too_large", retryable: false });
  });
});

describe("sync jobs", () => {
  it("use deterministic jobIds", async () => {
    await start();
    await feed([engageEvent({ userId: "ann", key: "trial_power_users", value: true })]);
    await syncAt(T0 + 6 * HOUR_MS);

    const job = await service.queue.getJob("default-trial_power_users-sync-1");
    expect(job?.data).toEqual({ source: "default", audience: "trial_power_users", syncNumber: 1, dueAt: T0 + 6 * HOUR_MS, claimedAt: T0 + 6 * HOUR_MS });
    expect(job?.returnvalue).toEqual({ status: "completed", source: "default", audience: "trial_power_users", syncNumber: 1, kind: "initial", sent: 1, failed: 0 });
  });
});
