/**
 * Redis memory that hydra-sync keeps per event: the dedupe key of each messageId (kept
 * for DEDUPE_WINDOW), the lane stream entry (kept for STREAM_RETENTION after delivery)
 * and the completed BullMQ jobs (kept up to COMPLETED_JOB_COUNT and
 * COMPLETED_JOB_RETENTION).
 *
 * Run: npm run build && node dist/bench/redis-memory.js [--events 100000] [--own-redis]
 * The producer, a worker and the Hydra simulator run in this process. The events are the
 * lane-bound track and identify events of examples/events.jsonl, in turn, each with a
 * UUID messageId, posted 500 to a /v1/batch request. Then 100 single events are posted
 * 30 ms apart, which makes one-event jobs. After delivery the worker stops, and the
 * script reads MEMORY USAGE of each kind of key. It then unlinks one kind at a time and
 * reads how much used_memory fell. Those figures are exact only on a Redis server that
 * nothing else uses. So --own-redis starts a private `redis-server` on a free 127.0.0.1
 * port (no persistence) and stops it at the end. The keys there have the default prefix
 * `hydra-sync`. Without it, REDIS_URL (default redis://127.0.0.1:6379) is used, and keys
 * go under `hs-bench-memory-<random>`, 14 bytes longer.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import type { Redis } from "ioredis";
import { request } from "undici";

import { loadConfig } from "../src/config/env.js";
import { createLogger } from "../src/logging/logger.js";
import { startProducer } from "../src/producer/index.js";
import { DELIVERY_GROUP, DELIVERY_QUEUE, RedisKeys } from "../src/redis/keys.js";
import { startSimulator } from "../src/simulator/index.js";
import { startWorker } from "../src/worker/index.js";
import { laneSampleEvents, typicalTrackEvent, withIds } from "./support/events.js";
import {
  BENCH_AUTHORIZATION,
  BENCH_HYDRA_API_KEY,
  BENCH_WRITE_KEY,
  BenchChild,
  benchPrefix,
  connectRedis,
  deletePrefix,
  describeMachine,
  formatNumber,
  freePort,
  printTable,
  REDIS_URL,
  runMain,
  stopOnFailure,
} from "./support/harness.js";

const EVENTS_PER_REQUEST = 500;
const SINGLE_EVENTS = 100;
const SINGLE_EVENT_SPACING_MS = 30;
/** Jobs of at least this many events show the per-event cost of a job, with its fixed part spread thin. */
const LARGE_JOB_EVENTS = 100;
/** Keys read with MEMORY USAGE per kind; their mean is taken as the cost of every key of the kind. */
const MEMORY_SAMPLE = 2_000;

interface KindFigures {
  kind: string;
  keys: number;
  /** Items the keys contain: messageIds, stream entries or events in jobs. */
  items: number;
  memoryUsageBytes: number;
  usedMemoryDropBytes: number;
}

runMain(
  async () => {
    const { values } = parseArgs({
      options: {
        events: { type: "string", default: "100000" },
        "own-redis": { type: "boolean", default: false },
      },
    });
    const requests = Math.ceil(Number(values.events) / EVENTS_PER_REQUEST);
    const events = requests * EVENTS_PER_REQUEST;

    let ownRedis: BenchChild | undefined;
    let redisUrl = REDIS_URL;
    if (values["own-redis"]) {
      const port = await freePort();
      ownRedis = new BenchChild("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { name: "redis-server", program: true });
      await stopOnFailure(ownRedis, ownRedis.waitForLine(/Ready to accept connections/, 10_000));
      redisUrl = `redis://127.0.0.1:${port}`;
    }

    // A private server contains nothing else, so the keys there can have the default
    // prefix and therefore their production length.
    const prefix = ownRedis ? "hydra-sync" : benchPrefix("memory");
    const redis = connectRedis(redisUrl);
    const keys = new RedisKeys(prefix);
    const logger = createLogger("silent");
    const simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger, recordEvents: false });
    const config = loadConfig({
      REDIS_URL: redisUrl,
      REDIS_PREFIX: prefix,
      HYDRA_API_URL: simulator.url,
      SEGMENT_WRITE_KEY: BENCH_WRITE_KEY,
      HYDRA_API_KEY: BENCH_HYDRA_API_KEY,
      PRODUCER_PORT: "0",
      LOG_LEVEL: "silent",
    });

    try {
      console.log("Redis memory per event: dedupe keys, lane stream entries, completed jobs");
      console.log(`machine: ${await describeMachine(redis)}`);
      console.log(`Redis: ${ownRedis ? `a private redis-server at ${redisUrl}` : `the shared server at ${redisUrl}; used_memory figures include other clients' activity`}`);

      const producer = await startProducer({ config, redis, logger });
      const worker = await startWorker({ config, logger });
      const samples = laneSampleEvents();
      const url = `http://127.0.0.1:${producer.port}`;

      const usedBefore = await usedMemory(redis);
      for (let index = 0; index < requests; index++) {
        const batch = Array.from({ length: EVENTS_PER_REQUEST }, (_, position) =>
          withIds(samples[(index * EVENTS_PER_REQUEST + position) % samples.length], randomUUID(), `usr_bench_${(index * EVENTS_PER_REQUEST + position) % 10_000}`),
        );
        await post(`${url}/v1/batch`, { batch });
      }
      const single = typicalTrackEvent();
      for (let index = 0; index < SINGLE_EVENTS; index++) {
        await post(`${url}/v1/track`, withIds(single, randomUUID(), `usr_single_${index}`));
        await sleep(SINGLE_EVENT_SPACING_MS);
      }
      await simulator.waitForEvents(events + SINGLE_EVENTS, 300_000);
      await waitForNoPending(redis, keys, config.partitions);
      await worker.close();
      await producer.close();
      const usedAfter = await usedMemory(redis);

      const dedupeKeys = await scanKeys(redis, `${prefix}:{*}:dedupe:*`);
      const streamKeys = await scanKeys(redis, `${prefix}:{*}:events`);
      const jobIds = await redis.zrange(`${keys.bullPrefix()}:${DELIVERY_QUEUE}:completed`, 0, -1);
      const jobKeys = jobIds.map((id) => `${keys.bullPrefix()}:${DELIVERY_QUEUE}:${id}`);
      const jobCounts = await Promise.all(jobKeys.map(async (key) => (JSON.parse((await redis.hget(key, "data")) ?? "{}") as { count?: number }).count ?? 0));
      const jobEvents = jobCounts.reduce((sum, count) => sum + count, 0);
      let entries = 0;
      for (const key of streamKeys) entries += await redis.xlen(key);
      const storedEventBytes = await meanStoredEventBytes(redis, streamKeys[0]);

      // MEMORY USAGE first, for every kind; unlinking then shows what used_memory gave back.
      const dedupeUsage = await meanMemoryUsage(redis, dedupeKeys);
      const streamUsage = await totalMemoryUsage(redis, streamKeys);
      const jobUsages = await memoryUsages(redis, jobKeys);
      const singleJobUsages = jobUsages.filter((_, index) => jobCounts[index] === 1);
    const largeJobs = jobCounts.map((count, index) => ({ count, bytes: jobUsages[index] })).filter((job) => job.count >= LARGE_JOB_EVENTS);
    const largeJobBytesPerEvent = largeJobs.reduce((sum, job) => sum + job.bytes, 0) / Math.max(1, largeJobs.reduce((sum, job) => sum + job.count, 0));

      const figures: KindFigures[] = [
        { kind: "dedupe key (one per messageId)", keys: dedupeKeys.length, items: dedupeKeys.length, memoryUsageBytes: dedupeUsage * dedupeKeys.length, usedMemoryDropBytes: await unlinkAndMeasure(redis, dedupeKeys) },
        { kind: "lane stream entry (after delivery)", keys: streamKeys.length, items: entries, memoryUsageBytes: streamUsage, usedMemoryDropBytes: await unlinkAndMeasure(redis, streamKeys) },
        {
          kind: "completed job, per event it contains",
          keys: jobKeys.length,
          items: jobEvents,
          memoryUsageBytes: jobUsages.reduce((sum, bytes) => sum + bytes, 0),
          usedMemoryDropBytes: await unlinkAndMeasure(redis, jobKeys),
        },
      ];

      console.log("");
      console.log(
        `${formatNumber(events)} events in batches and ${SINGLE_EVENTS} single events delivered; used_memory grew by ${formatNumber((usedAfter - usedBefore) / 1024 ** 2, 1)} MiB. ` +
          `Dedupe key name: ${dedupeKeys[0]?.length ?? 0} bytes (UUID messageId); stored event JSON: ${formatNumber(storedEventBytes)} bytes on average; ` +
          `${jobKeys.length} completed jobs of ${Math.min(...jobCounts)} to ${Math.max(...jobCounts)} events; MEMORY USAGE of a one-event job: ` +
          `${formatNumber(singleJobUsages.reduce((sum, bytes) => sum + bytes, 0) / Math.max(1, singleJobUsages.length))} B (mean of ${singleJobUsages.length}); ` +
          `of a job of ${LARGE_JOB_EVENTS} or more events: ${formatNumber(largeJobBytesPerEvent)} B per event (${largeJobs.length} jobs).`,
      );
      console.log("");
      printTable(
        ["item", "count", "MEMORY USAGE per item", "used_memory freed per item", "1M events a day", "10M events a day"],
        figures.map((row) => {
          const perItem = (ownRedis ? row.usedMemoryDropBytes : row.memoryUsageBytes) / Math.max(1, row.items);
          const daily = row.kind.startsWith("completed") ? ["-", "-"] : [`${formatNumber((perItem * 1e6) / 1024 ** 2)} MiB`, `${formatNumber((perItem * 1e7) / 1024 ** 3, 2)} GiB`];
          return [
            row.kind,
            formatNumber(row.items),
            `${formatNumber(row.memoryUsageBytes / Math.max(1, row.items))} B`,
            `${formatNumber(row.usedMemoryDropBytes / Math.max(1, row.items))} B`,
            ...daily,
          ];
        }),
      );
      console.log("");
      console.log(
        `The daily columns hold one day of events, as DEDUPE_WINDOW=24h and STREAM_RETENTION=24h keep them, at the ${ownRedis ? "used_memory" : "MEMORY USAGE"} figure per item. ` +
          "Completed jobs are bounded by COMPLETED_JOB_COUNT (default 10,000) and COMPLETED_JOB_RETENTION (default 1h), so their cost depends on the batch sizes, not on the daily total.",
      );
    } finally {
      await simulator.close();
      await deletePrefix(redis, prefix);
      redis.disconnect();
      await ownRedis?.stop();
    }
  },
  // NOTE: Worker.close() leaves one Redis connection open (the one Router.start duplicates
  // for QueueEvents), which would keep this process alive, so it exits when done.
  { exitWhenDone: true },
);

async function post(url: string, body: unknown): Promise<void> {
  const response = await request(url, { method: "POST", headers: { "content-type": "application/json", authorization: BENCH_AUTHORIZATION }, body: JSON.stringify(body) });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`POST ${url} failed with status ${response.statusCode}: ${text.slice(0, 300)}`);
}

async function usedMemory(redis: Redis): Promise<number> {
  // Lazily freed values (UNLINK) count until a background thread frees them.
  for (let attempt = 0; attempt < 100; attempt++) {
    const info = await redis.info("memory");
    if (Number(/lazyfree_pending_objects:(\d+)/.exec(info)?.[1] ?? "0") === 0) return Number(/used_memory:(\d+)/.exec(info)?.[1]);
    await sleep(50);
  }
  throw new Error("Redis still had lazily freed objects pending after 5 s");
}

async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1_000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== "0");
  return found;
}

async function meanMemoryUsage(redis: Redis, keys: string[]): Promise<number> {
  const sample = keys.slice(0, MEMORY_SAMPLE);
  if (sample.length === 0) return 0;
  return (await totalMemoryUsage(redis, sample)) / sample.length;
}

async function totalMemoryUsage(redis: Redis, keys: string[]): Promise<number> {
  return (await memoryUsages(redis, keys)).reduce((sum, bytes) => sum + bytes, 0);
}

async function memoryUsages(redis: Redis, keys: string[]): Promise<number[]> {
  const pipeline = redis.pipeline();
  // SAMPLES 0 reads every element of a stream or hash instead of estimating from 5.
  for (const key of keys) pipeline.memory("USAGE", key, "SAMPLES", 0);
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([error, bytes]) => (error ? 0 : Number(bytes ?? 0)));
}

async function unlinkAndMeasure(redis: Redis, keys: string[]): Promise<number> {
  const before = await usedMemory(redis);
  for (let start = 0; start < keys.length; start += 1_000) await redis.unlink(...keys.slice(start, start + 1_000));
  return before - (await usedMemory(redis));
}

async function meanStoredEventBytes(redis: Redis, stream: string | undefined): Promise<number> {
  if (!stream) return 0;
  const entries = (await redis.xrange(stream, "-", "+", "COUNT", 1_000)) as [string, string[]][];
  const lengths = entries.map(([, fields]) => Buffer.byteLength(fields[fields.indexOf("e") + 1] ?? ""));
  return lengths.reduce((sum, length) => sum + length, 0) / Math.max(1, lengths.length);
}

async function waitForNoPending(redis: Redis, keys: RedisKeys, partitions: number): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    let pending = 0;
    for (let partition = 0; partition < partitions; partition++) {
      const summary = (await redis.xpending(keys.laneStream(keys.laneId("default", partition)), DELIVERY_GROUP).catch(() => [0])) as [number];
      pending += summary[0];
    }
    if (pending === 0) return;
    await sleep(100);
  }
  throw new Error("stream entries were still pending 30 s after delivery");
}
