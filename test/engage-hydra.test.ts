import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { listAudiences, startEngageService, type EngageService, type SyncCompletedEvent, type SyncFailedEvent } from "../src/engage/index.js";
import { createHydraClient } from "../src/hydra/index.js";
import type { HydraClient } from "../src/hydra/types.js";
import { createLogger } from "../src/logging/logger.js";
import { startSimulator, type Simulator } from "../src/simulator/index.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { appendEngage, engageEvent, engageKeys, exampleEngageIdentifies, FakeClock, HOUR_MS, seededRandom } from "./engage-helpers.js";

const T0 = Date.parse("2025-03-11T09:00:00.000Z");
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let clock: FakeClock;
let simulator: Simulator;
let hydra: HydraClient;
let service: EngageService;
let completed: SyncCompletedEvent[];
let failed: SyncFailedEvent[];

beforeEach(async () => {
  redis = testRedis();
  clock = new FakeClock(T0);
  simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger, apiKeys: ["test-hydra-key"] });
  config = testConfig({ HYDRA_API_URL: simulator.url, HYDRA_BACKOFF_BASE: "1", HYDRA_BACKOFF_MAX: "5" });
  hydra = createHydraClient({ baseUrl: simulator.url, timeoutMs: 2_000, logger, quickRetries: 0 });
  service = await startEngageService({ config, redis, logger, hydraClient: hydra, clock, runLoops: false, random: seededRandom(3) });
  completed = [];
  failed = [];
  service.events.on("sync:completed", (event: SyncCompletedEvent) => completed.push(event));
  service.events.on("sync:failed", (event: SyncFailedEvent) => failed.push(event));
});

afterEach(async () => {
  await service.close();
  await hydra.close();
  await simulator.close();
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

async function feed(events: Record<string, unknown>[], atMs: number): Promise<void> {
  clock.set(atMs);
  await appendEngage(redis, config, events);
  while ((await service.consumeOnce()) > 0);
}

async function syncAt(ms: number): Promise<SyncCompletedEvent[]> {
  clock.set(ms);
  const before = completed.length + failed.filter((event) => !event.willRetry).length;
  const added = await service.tick();
  const deadline = Date.now() + 10_000;
  while (completed.length + failed.filter((event) => !event.willRetry).length - before < added) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the syncs to settle");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return completed.slice(completed.length - added);
}

function membersOf(audience: string): string[] {
  return (simulator.state.audiences().find((record) => record.key === audience)?.members ?? []).sort();
}

function examples(from: number, to: number): Record<string, unknown>[] {
  return exampleEngageIdentifies()
    .filter(({ line }) => line >= from && line <= to)
    .map(({ event }) => event);
}

describe("sync to the simulator", () => {
  it("builds the audiences of the example day", async () => {
    await feed(examples(40, 134), T0);
    await syncAt(T0 + 6 * HOUR_MS);

    expect(membersOf("trial_power_users")).toEqual(["usr_jfhp88nn2w", "usr_zcs7z4sv7v"]);
    expect(membersOf("churn_risk_accounts")).toEqual(["usr_4vjge4s1d3", "usr_fv30b4nj3k"]);
    expect(membersOf("expansion_ready")).toEqual(["usr_ppe7qw2647", "usr_ze3rpsvd2e"]);
    expect(simulator.state.person("usr_dprt62ychb")?.computedTraits).toEqual({ reports_created_30d: 47 });
    expect(simulator.state.person("usr_jfhp88nn2w")?.companyId).toBe("cobaltridge.example.com");
  });

  it("applies a delta sync", async () => {
    await feed(examples(40, 134), T0);
    await syncAt(T0 + 6 * HOUR_MS);
    await feed([...examples(156, 156), engageEvent({ userId: "usr_zcs7z4sv7v", key: "trial_power_users", value: false, timestamp: "2025-03-11T17:10:00.000Z" })], T0 + 8 * HOUR_MS);

    const [summary] = (await listAudiences(redis, config)).filter((candidate) => candidate.audience === "trial_power_users");
    const [sync] = (await syncAt(summary.nextSyncAt ?? 0)).filter((event) => event.audience === "trial_power_users");

    expect(sync).toEqual({ source: "default", audience: "trial_power_users", syncNumber: 2, sent: 2, failed: 0, kind: "delta" });
    expect(membersOf("trial_power_users")).toEqual(["usr_dprt62ychb", "usr_jfhp88nn2w"]);
    expect(simulator.state.stats().duplicates).toBe(0);
  });

  it("keeps users that Hydra rejected in a 207 pending", async () => {
    await feed(["ann", "bob"].map((userId) => engageEvent({ userId, key: "trial_power_users", value: true, email: `${userId}@example.com` })), T0);
    simulator.addFault({ status: 207, reject: [{ index: 0, status: 400, error: "invalid trait" }] });
    const [sync] = await syncAt(T0 + 6 * HOUR_MS);

    expect(sync).toMatchObject({ sent: 1, failed: 1 });
    const pending = await redis.hgetall(engageKeys(config).pending("trial_power_users"));
    expect(Object.keys(pending).length).toBe(1);
    const member = Object.keys(pending)[0];
    const error = JSON.parse((await redis.hget(engageKeys(config).errors("trial_power_users"), member)) ?? "{}");
    expect(error).toMatchObject({ syncNumber: 1, status: 400, error: "invalid trait", retryable: false });
    expect(membersOf("trial_power_users")).toEqual([member === "u:ann" ? "bob" : "ann"]);
  });

  it("delivers after Hydra was down across a sync time", async () => {
    await feed(["ann", "bob"].map((userId) => engageEvent({ userId, key: "trial_power_users", value: true })), T0);
    simulator.addFault({ status: 503, count: 1_000 });
    expect(await syncAt(T0 + 6 * HOUR_MS)).toEqual([]);
    expect(failed.at(-1)).toMatchObject({ syncNumber: 1, willRetry: false });
    expect(membersOf("trial_power_users")).toEqual([]);

    simulator.clearFaults();
    const [summary] = await listAudiences(redis, config);
    expect(summary.pending).toBe(2);
    const [sync] = await syncAt(summary.nextSyncAt ?? 0);

    expect(sync).toEqual({ source: "default", audience: "trial_power_users", syncNumber: 2, sent: 2, failed: 0, kind: "initial" });
    expect(membersOf("trial_power_users")).toEqual(["ann", "bob"]);
  });
});
