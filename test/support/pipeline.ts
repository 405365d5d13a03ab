import { request } from "undici";

import type { Config } from "../../src/config/env.js";
import { createLogger } from "../../src/logging/logger.js";
import { startProducer, type Producer } from "../../src/producer/index.js";
import { RedisKeys } from "../../src/redis/keys.js";
import { startSimulator, type Simulator } from "../../src/simulator/index.js";
import { startWorker, type WorkerService, type WorkerServiceOptions } from "../../src/worker/index.js";
import { testConfig } from "./config.js";
import { deletePrefix, testRedis } from "./redis.js";

export interface Pipeline {
  config: Config;
  keys: RedisKeys;
  simulator: Simulator;
  producer: Producer;
  worker?: WorkerService;
  redis: ReturnType<typeof testRedis>;
  startWorker(options?: Partial<WorkerServiceOptions>): Promise<WorkerService>;
  /** Posts events to /v1/batch with a source's write key and returns the parsed reply. */
  send(events: object[], writeKey?: string): Promise<{ status: number; body: Record<string, unknown> }>;
  stats(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

/**
 * Starts the simulator, a producer and (unless `worker: false`) a worker against real
 * Redis under a key prefix of its own, with short timings for tests.
 */
export async function startPipeline(env: Record<string, string> = {}, options: { worker?: boolean } = {}): Promise<Pipeline> {
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? "silent");
  const simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger });
  const config = testConfig({
    HYDRA_API_URL: simulator.url,
    BATCH_LINGER_MS: "20",
    PARTITIONS: "4",
    HYDRA_BACKOFF_BASE: "100ms",
    HYDRA_BACKOFF_MAX: "400ms",
    HYDRA_PAUSE_RETRY: "300ms",
    HYDRA_TIMEOUT: "2s",
    ...env,
  });
  const keys = new RedisKeys(config.redisPrefix);
  const redis = testRedis();
  const producer = await startProducer({ config, redis, logger });
  const workers: WorkerService[] = [];

  const pipeline: Pipeline = {
    config,
    keys,
    simulator,
    producer,
    redis,
    async startWorker(overrides = {}) {
      const worker = await startWorker({ config, logger, leaseTtlMs: 1_500, lockDurationMs: 2_000, stalledIntervalMs: 1_000, ...overrides });
      workers.push(worker);
      pipeline.worker ??= worker;
      return worker;
    },
    async send(events, writeKey = config.sources[0].writeKey) {
      const response = await request(`http://127.0.0.1:${producer.port}/v1/batch`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}` },
        body: JSON.stringify({ batch: events }),
      });
      return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
    },
    async stats() {
      const raw = await redis.hgetall(keys.stats());
      return Object.fromEntries(Object.entries(raw).map(([field, value]) => [field, Number(value)]));
    },
    async close() {
      await producer.close();
      for (const worker of workers) await worker.close();
      await simulator.close();
      await deletePrefix(redis, config.redisPrefix);
      redis.disconnect();
    },
  };

  if (options.worker !== false) await pipeline.startWorker();
  return pipeline;
}

/** Polls a condition every 20 ms until it holds, or fails with the message after timeoutMs. */
export async function waitFor(condition: () => boolean | Promise<boolean>, message: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Builds a track event of a user with a recognisable sequence number. */
export function track(userId: string, sequence: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "track",
    userId,
    event: "Report Viewed",
    messageId: `msg-${userId}-${sequence}`,
    properties: { feature: "reports", sequence, eventFlag: "positive" },
    ...extra,
  };
}
