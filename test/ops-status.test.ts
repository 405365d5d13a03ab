import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { collectStatus, formatStatus, runStatus, type StatusReport } from "../src/ops/status.js";
import { RedisKeys } from "../src/redis/keys.js";
import { STAT } from "../src/types.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { deliveryData, makeDeadLetters, TextCapture } from "./ops-support.js";

let config: Config;
let redis: Redis;
let keys: RedisKeys;

beforeEach(async () => {
  config = testConfig({ PARTITIONS: "3" });
  redis = testRedis();
  keys = new RedisKeys(config.redisPrefix);

  // Lane default.p1: four entries; the group read three and acknowledged one.
  const stream = keys.laneStream("default.p1");
  for (const id of ["1-0", "2-0", "3-0", "4-0"]) await redis.xadd(stream, id, "u", "usr_1", "e", "{}");
  await redis.xgroup("CREATE", stream, "delivery", "0");
  await redis.xreadgroup("GROUP", "delivery", "router-1", "COUNT", 3, "STREAMS", stream, ">");
  await redis.xack(stream, "delivery", "1-0");

  await redis.set(keys.pausedSource("default"), "401", "PX", 120_000);
  await redis.hset(keys.stats(), { [STAT.accepted]: "4", [STAT.deadLettered]: "2" });
  await makeDeadLetters(config, redis, [{ id: "default.p2-9-0", data: deliveryData("default", "default.p2", 2), rejection: { code: "bad_request", status: 400, error: "invalid" } }]);
});

afterEach(async () => {
  await deletePrefix(redis, config.redisPrefix);
  redis.disconnect();
});

describe("collectStatus", () => {
  it("reads queues, streams and sources", async () => {
    const report = await collectStatus(redis, config, {
      listAudiences: async () => [{ source: "default", audience: "expansion_ready", pending: 2, nextSyncAt: null }],
    });

    expect(report.redisPrefix).toBe(config.redisPrefix);
    expect(report.queues).toEqual([
      { queue: "hydra-delivery", counts: { waiting: 0, active: 0, delayed: 0, prioritized: 0, paused: 0, failed: 1, completed: 0 } },
      { queue: "engage-sync", counts: { waiting: 0, active: 0, delayed: 0, prioritized: 0, paused: 0, failed: 0, completed: 0 } },
    ]);
    expect(report.streams.map((stream) => [stream.name, stream.kind, stream.length])).toEqual([
      ["default.p0", "lane", 0],
      ["default.p1", "lane", 4],
      ["default.p2", "lane", 0],
      ["engage.default", "engage", 0],
    ]);
    expect(report.streams[1].groups).toEqual([{ name: "delivery", consumers: 1, pending: 2, lag: 1, lastDeliveredId: "3-0" }]);
    expect(report.heldSources.length).toBe(1);
    expect(report.heldSources[0].source).toBe("default");
    expect(report.heldSources[0].reason).toBe("paused");
    expect(report.heldSources[0].remainingMs).toBeGreaterThan(110_000);
    expect(report.audiences).toEqual([{ source: "default", audience: "expansion_ready", pending: 2, nextSyncAt: null }]);
    expect(report.counters).toEqual({ accepted: 4, dead_lettered: 2 });
  });
});

describe("formatStatus", () => {
  it("prints one screen", async () => {
    const report: StatusReport = { ...(await collectStatus(redis, config)), generatedAt: "2025-03-11T15:00:00.000Z" };
    report.heldSources[0].remainingMs = 90_000;

    expect(formatStatus(report)).toBe(
      [
        `hydra-sync status at 2025-03-11T15:00:00.000Z (REDIS_PREFIX ${config.redisPrefix})`,
        "",
        "QUEUE           WAITING  ACTIVE  DELAYED  PRIORITIZED  PAUSED  FAILED  COMPLETED",
        "hydra-delivery        0       0        0            0       0       1          0",
        "engage-sync           0       0        0            0       0       0          0",
        "",
        "STREAM          LENGTH  GROUP     PENDING  LAG",
        "default.p1           4  delivery        2    1",
        "engage.default       0  -               -    -",
        "2 of 3 lanes are empty",
        "",
        "SOURCE   STATE   REMAINING",
        "default  paused  1.5m left",
        "",
        "Engage audiences were not read",
        "",
        "counters: accepted=4  dead_lettered=2",
        "",
      ].join("\n"),
    );
  });

  it("collapses lanes beyond --lanes", async () => {
    const report = await collectStatus(redis, config);
    expect(formatStatus(report, 0)).toContain("1 more busy lanes not shown (use --lanes or --json); 2 of 3 lanes are empty");
  });

  it("orders audiences by next sync", async () => {
    const now = Date.parse("2025-03-11T15:00:00.000Z");
    const report: StatusReport = {
      ...(await collectStatus(redis, config)),
      generatedAt: new Date(now).toISOString(),
      audiences: [
        { source: "default", audience: "later", pending: 1, nextSyncAt: now + 3_600_000 },
        { source: "default", audience: "unscheduled", pending: 0, nextSyncAt: null },
        { source: "default", audience: "overdue", pending: 4, nextSyncAt: now - 1_000 },
      ],
    };

    const text = formatStatus(report);
    const section = text.slice(text.indexOf("SOURCE   AUDIENCE"), text.indexOf("counters:")).trim().split("\n");
    expect(section).toEqual([
      "SOURCE   AUDIENCE     PENDING  NEXT SYNC",
      "default  overdue            4  due now",
      "default  later              1  in 1h",
      "default  unscheduled        0  not scheduled",
    ]);
  });
});

describe("runStatus", () => {
  it("prints JSON with --json", async () => {
    const stdout = new TextCapture();
    const code = await runStatus(["--json"], { stdout, stderr: new TextCapture(), config });

    expect(code).toBe(0);
    const report = JSON.parse(stdout.text) as StatusReport;
    expect(report.queues[0].counts.failed).toBe(1);
    expect(report.audiences).toEqual([]);
  });

  it("rejects an unknown option", async () => {
    const stderr = new TextCapture();
    const code = await runStatus(["--yaml"], { stdout: new TextCapture(), stderr, config });

    expect(code).toBe(2);
    expect(stderr.lines()[0]).toBe("hydra-sync status: Unknown option '--yaml'");
  });
});
