import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { startEngageService, waitForSync, type EngageService, type SyncCompletedEvent } from "../src/engage/index.js";
import { createLogger } from "../src/logging/logger.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { appendEngage, engageEvent, FakeHydraClient, valuesOf } from "./engage-helpers.js";

const AUDIENCE = "trial_power_users";
const logger = createLogger("silent");

let redis: Redis;
let config: Config;
let hydra: FakeHydraClient;
let service: EngageService | undefined;

beforeEach(() => {
  redis = testRedis();
  config = testConfig({ ENGAGE_INITIAL_SYNC_DELAY: "500ms", ENGAGE_SYNC_INTERVAL: "300ms-500ms" });
  hydra = new FakeHydraClient();
});

afterEach(async () => {
  await service?.close();
  service = undefined;
  await deletePrefix(redis, config.redisPrefix);
  await redis.quit();
});

describe("service with its loops", () => {
  it("runs an initial and a delta sync", async () => {
    service = await startEngageService({ config, logger, hydraClient: hydra, tickIntervalMs: 50 });
    const completed: SyncCompletedEvent[] = [];
    service.events.on("sync:completed", (event: SyncCompletedEvent) => completed.push(event));
    const initial = waitForSync(service.events, { audience: AUDIENCE, kind: "initial" }, 10_000);
    await appendEngage(redis, config, ["ann", "bob"].map((userId) => engageEvent({ userId, key: AUDIENCE, value: true, timestamp: new Date().toISOString() })));

    expect(await initial).toEqual({ source: "default", audience: AUDIENCE, syncNumber: 1, sent: 2, failed: 0, kind: "initial" });

    await appendEngage(redis, config, [engageEvent({ userId: "bob", key: AUDIENCE, value: false, timestamp: new Date(Date.now() + 1).toISOString() })]);
    const deadline = Date.now() + 10_000;
    while (!completed.some((event) => event.kind === "delta" && event.sent > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const delta = completed.find((event) => event.kind === "delta" && event.sent > 0);

    expect(delta?.sent).toBe(1);
    expect(valuesOf(hydra.sent(), AUDIENCE)).toEqual(["ann=true", "bob=false", "bob=true"]);
  });

  it("closes twice without error", async () => {
    service = await startEngageService({ config, logger, hydraClient: hydra });
    await service.close();

    await expect(service.close()).resolves.toBeUndefined();
  });
});

describe("service roles", () => {
  it("runs the scheduler without a Hydra client", async () => {
    service = await startEngageService({ config, redis, logger, roles: ["scheduler"], runLoops: false });

    expect(await service.tick()).toBe(0);
  });

  it("rejects the worker role without a Hydra client", async () => {
    await expect(startEngageService({ config, redis, logger, roles: ["worker"] })).rejects.toThrow("the worker role needs a hydraClient");
  });
});

describe("waitForSync", () => {
  it("times out with the match in the message", async () => {
    service = await startEngageService({ config, redis, logger, hydraClient: hydra, runLoops: false });

    await expect(waitForSync(service.events, { audience: "missing" }, 50)).rejects.toThrow('No Engage sync matching {"audience":"missing"} completed within 50 ms.');
  });
});
