import type { Server } from "node:http";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { BATCH_SIZE_BUCKETS, bucketFor } from "../src/metrics/buckets.js";
import { RedisDeliveryMetrics } from "../src/metrics/delivery-metrics.js";
import { parseDeliveryMetrics } from "../src/metrics/delivery-metrics-hash.js";
import { createProducerMetrics, metricsRoute } from "../src/metrics/producer-metrics.js";
import { ServiceMetrics } from "../src/metrics/service-metrics.js";
import { healthRoutes } from "../src/ops/health.js";
import { openServiceQueues } from "../src/ops/queues.js";
import { createRedis } from "../src/redis/connection.js";
import { RedisKeys } from "../src/redis/keys.js";
import { STAT } from "../src/types.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { closeServer, deliveryData, makeDeadLetters, serveRoute } from "./ops-support.js";

/** Returns the sample lines of a Prometheus text exposition whose name starts with `prefix`. */
function samples(text: string, prefix: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(prefix));
}

let config: Config;
let redis: Redis;
let keys: RedisKeys;
let server: Server | undefined;

beforeEach(() => {
  config = testConfig({ PARTITIONS: "2" });
  redis = testRedis();
  keys = new RedisKeys(config.redisPrefix);
});

afterEach(async () => {
  await closeServer(server);
  server = undefined;
  await deletePrefix(redis, config.redisPrefix);
  redis.disconnect();
});

describe("bucketFor", () => {
  it("picks the smallest bound at least the value", () => {
    expect(bucketFor(1, BATCH_SIZE_BUCKETS)).toBe("1");
    expect(bucketFor(6, BATCH_SIZE_BUCKETS)).toBe("10");
    expect(bucketFor(500, BATCH_SIZE_BUCKETS)).toBe("500");
    expect(bucketFor(501, BATCH_SIZE_BUCKETS)).toBe("+Inf");
  });
});

describe("RedisDeliveryMetrics", () => {
  it("writes nothing before a flush", async () => {
    const metrics = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    metrics.delivered("default", 2, [100, 3_000]);

    expect(await redis.exists(keys.deliveryMetrics())).toBe(0);
    await metrics.close();
  });

  it("flushes counters and buckets on close", async () => {
    const metrics = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    metrics.delivered("default", 2, [100, 3_000]);
    metrics.delivered("default", 1, [40]);
    metrics.retried("default", 5);
    metrics.deadLettered("billing", 7);
    metrics.batchSize(3);
    metrics.batchSize(250);
    await metrics.close();

    const hash = await redis.hgetall(keys.deliveryMetrics());
    expect(hash).toEqual({
      "delivered:default": "3",
      "latency:default:bucket:0.1": "1",
      "latency:default:bucket:5": "1",
      "latency:default:bucket:0.05": "1",
      "latency:default:count": "3",
      "latency:default:sum": "3.14",
      "retried:default": "5",
      "dead_lettered:billing": "7",
      "batch_size:bucket:5": "1",
      "batch_size:bucket:300": "1",
      "batch_size:count": "2",
      "batch_size:sum": "253",
    });
  });

  it("adds to what other workers flushed", async () => {
    const first = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    const second = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    first.retried("default", 2);
    second.retried("default", 3);
    await first.close();
    await second.close();

    expect(await redis.hget(keys.deliveryMetrics(), "retried:default")).toBe("5");
  });

  it("flushes on its timer", async () => {
    const metrics = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 50 });
    metrics.deadLettered("default", 4);

    const deadline = Date.now() + 5_000;
    while ((await redis.hget(keys.deliveryMetrics(), "dead_lettered:default")) === null && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await redis.hget(keys.deliveryMetrics(), "dead_lettered:default")).toBe("4");
    await metrics.close();
  });

  it("keeps increments when a flush fails", async () => {
    // A string at the hash's key makes HINCRBY fail with WRONGTYPE inside the transaction.
    await redis.set(keys.deliveryMetrics(), "not a hash");
    const metrics = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    metrics.retried("default", 2);
    await metrics.flush();
    expect(await redis.get(keys.deliveryMetrics())).toBe("not a hash");

    await redis.del(keys.deliveryMetrics());
    metrics.retried("default", 1);
    await metrics.close();
    expect(await redis.hget(keys.deliveryMetrics(), "retried:default")).toBe("3");
  });
});

describe("producer metrics route", () => {
  it("serves the producer counters", async () => {
    const registry = new Registry();
    const metrics = createProducerMetrics(registry);
    metrics.accepted("default", 3);
    metrics.accepted("default", 2);
    metrics.rejected("invalid_json", 1);
    metrics.filtered("hydra_disabled", 4);
    metrics.duplicate(6);
    const started = await serveRoute(metricsRoute(registry));
    server = started.server;

    const response = await fetch(`${started.url}/metrics`);
    const text = await response.text();

    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(samples(text, "hydra_sync_producer_")).toEqual([
      'hydra_sync_producer_events_accepted_total{source="default"} 5',
      'hydra_sync_producer_events_rejected_total{reason="invalid_json"} 1',
      'hydra_sync_producer_events_filtered_total{reason="hydra_disabled"} 4',
      "hydra_sync_producer_events_duplicate_total 6",
    ]);
  });

  it("leaves other paths to the next route", async () => {
    const started = await serveRoute(metricsRoute(new Registry()));
    server = started.server;

    expect((await fetch(`${started.url}/metric`)).status).toBe(404);
    expect((await fetch(`${started.url}/metrics`, { method: "POST" })).status).toBe(404);
  });
});

describe("health routes", () => {
  let draining = false;
  let baseUrl = "";

  beforeEach(async () => {
    draining = false;
    const started = await serveRoute(healthRoutes({ redis, isDraining: () => draining }));
    server = started.server;
    baseUrl = started.url;
  });

  it("answers /healthz", async () => {
    const response = await fetch(`${baseUrl}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
  });

  it("answers /readyz when Redis answers", async () => {
    const response = await fetch(`${baseUrl}/readyz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ready" });
  });

  it("answers 503 while draining", async () => {
    draining = true;
    const response = await fetch(`${baseUrl}/readyz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: "not ready", reason: "draining" });
  });

  it("answers 503 without Redis", async () => {
    // Port 1 on loopback has no server, and without an offline queue PING fails at once.
    const unreachable = createRedis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
    unreachable.on("error", () => {});
    const started = await serveRoute(healthRoutes({ redis: unreachable, isDraining: () => false, redisTimeoutMs: 500 }));
    try {
      const response = await fetch(`${started.url}/readyz`);
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({ status: "not ready", reason: "redis unreachable" });
    } finally {
      await closeServer(started.server);
      unreachable.disconnect();
    }
  });
});

describe("ServiceMetrics", () => {
  it("exposes Redis state as metrics", async () => {
    await redis.hset(keys.stats(), {
      [STAT.accepted]: "120",
      [STAT.duplicate]: "4",
      [STAT.engageHeld]: "19",
      [STAT.rejected("invalid_json")]: "2",
      [STAT.filtered("hydra_disabled")]: "3",
      [STAT.delivered]: "99",
    });

    const delivery = new RedisDeliveryMetrics(redis, keys, { flushIntervalMs: 60_000 });
    delivery.delivered("default", 2, [200, 1_500]);
    delivery.batchSize(2);
    delivery.deadLettered("default", 1);
    await delivery.close();

    // Lane default.p0: three entries, the group read two and acknowledged one.
    const stream = keys.laneStream("default.p0");
    for (const id of ["1-0", "2-0", "3-0"]) await redis.xadd(stream, id, "u", "usr_1", "e", "{}");
    await redis.xgroup("CREATE", stream, "delivery", "0");
    await redis.xreadgroup("GROUP", "delivery", "router-1", "COUNT", 2, "STREAMS", stream, ">");
    await redis.xack(stream, "delivery", "1-0");
    await redis.set(keys.pausedSource("default"), "401", "PX", 60_000);

    const queues = openServiceQueues(config, redis);
    await makeDeadLetters(config, redis, [{ id: "default.p1-5-0", data: deliveryData("default", "default.p1", 2), rejection: { code: "bad_request", status: 400, error: "invalid event" } }]);

    const metrics = new ServiceMetrics({
      redis,
      config,
      queues,
      listAudiences: async () => [{ source: "default", audience: "trial_power_users", pending: 3, nextSyncAt: null }],
    });
    const text = await metrics.render();
    await Promise.all(queues.map((queue) => queue.close()));

    expect(samples(text, "hydra_sync_events_")).toEqual([
      "hydra_sync_events_accepted_total 120",
      "hydra_sync_events_duplicate_total 4",
      "hydra_sync_events_engage_held_total 19",
      'hydra_sync_events_rejected_total{reason="invalid_json"} 2',
      'hydra_sync_events_filtered_total{reason="hydra_disabled"} 3',
      'hydra_sync_events_delivered_total{source="default"} 2',
      'hydra_sync_events_dead_lettered_total{source="default"} 1',
    ]);
    expect(samples(text, "hydra_sync_batch_size_events")).toEqual([
      ...BATCH_SIZE_BUCKETS.map((bound) => `hydra_sync_batch_size_events_bucket{le="${bound}"} ${bound >= 5 ? 1 : 0}`),
      'hydra_sync_batch_size_events_bucket{le="+Inf"} 1',
      "hydra_sync_batch_size_events_sum 2",
      "hydra_sync_batch_size_events_count 1",
    ]);
    expect(samples(text, 'hydra_sync_delivery_latency_seconds_bucket{source="default",le="0.25"}')).toEqual([
      'hydra_sync_delivery_latency_seconds_bucket{source="default",le="0.25"} 1',
    ]);
    expect(samples(text, 'hydra_sync_delivery_latency_seconds_bucket{source="default",le="2.5"}')).toEqual([
      'hydra_sync_delivery_latency_seconds_bucket{source="default",le="2.5"} 2',
    ]);
    expect(samples(text, "hydra_sync_delivery_latency_seconds_sum")).toEqual(['hydra_sync_delivery_latency_seconds_sum{source="default"} 1.7']);
    expect(samples(text, "hydra_sync_stream_")).toEqual([
      'hydra_sync_stream_length_entries{stream="default.p0",kind="lane"} 3',
      'hydra_sync_stream_length_entries{stream="default.p1",kind="lane"} 0',
      'hydra_sync_stream_length_entries{stream="engage.default",kind="engage"} 0',
      'hydra_sync_stream_pending_entries{stream="default.p0",group="delivery"} 1',
      'hydra_sync_stream_lag_entries{stream="default.p0",group="delivery"} 1',
    ]);
    expect(samples(text, "hydra_sync_source_")).toEqual([
      'hydra_sync_source_paused{source="default"} 1',
      'hydra_sync_source_rate_limited{source="default"} 0',
    ]);
    expect(samples(text, 'hydra_sync_queue_jobs{queue="hydra-delivery"')).toEqual([
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="waiting"} 0',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="active"} 0',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="delayed"} 0',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="prioritized"} 0',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="paused"} 0',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="failed"} 1',
      'hydra_sync_queue_jobs{queue="hydra-delivery",state="completed"} 0',
    ]);
    expect(samples(text, "hydra_sync_engage_pending_changes")).toEqual([
      'hydra_sync_engage_pending_changes{source="default",audience="trial_power_users"} 3',
    ]);
    expect(samples(text, "hydra_sync_process_cpu_seconds_total").length).toBe(1);
  });

  it("parses a stored hash back", () => {
    const snapshot = parseDeliveryMetrics({ "delivered:a": "2", "latency:a:bucket:1": "2", "latency:a:sum": "1.5", "unknown": "1", "retried:b": "x" });
    expect(snapshot.counters.delivered.get("a")).toBe(2);
    expect(snapshot.counters.retried.size).toBe(0);
    expect(snapshot.latencyBySource.get("a")).toEqual({ buckets: new Map([["1", 2]]), sum: 1.5, count: 0 });
  });
});
