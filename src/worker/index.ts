import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import type { Worker } from "bullmq";

import { Router } from "../batching/router.js";
import type { Config } from "../config/env.js";
import { createHydraClient } from "../hydra/client.js";
import type { HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import { NO_DELIVERY_METRICS, RedisDeliveryMetrics, type DeliveryMetrics } from "../metrics/delivery-metrics.js";
import { createRedis, warnUnlessNoEviction } from "../redis/connection.js";
import { RedisKeys } from "../redis/keys.js";
import { createDeliveryQueue, type DeliveryQueue } from "./delivery-queue.js";
import { DeliveryProcessor } from "./delivery-processor.js";
import { createDeliveryWorker } from "./delivery-worker.js";
import type { DeliveryJobData, DeliveryJobResult } from "./job-data.js";

export interface WorkerServiceOptions {
  config: Config;
  logger: Logger;
  /** @defaultValue a client for config.hydraApiUrl */
  hydraClient?: HydraClient;
  /** @defaultValue metrics flushed to Redis for the admin server's /metrics */
  metrics?: DeliveryMetrics;
  /** Lease and stall timings, shortened by tests. */
  leaseTtlMs?: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
}

/** A worker process's delivery role: a router that batches lane streams and a BullMQ worker that delivers. */
export interface WorkerService {
  readonly router: Router;
  readonly worker: Worker<DeliveryJobData, DeliveryJobResult>;
  readonly queue: DeliveryQueue;
  /** Stops reading, lets active jobs finish, and closes every connection. Idempotent. */
  close(): Promise<void>;
}

export async function startWorker(options: WorkerServiceOptions): Promise<WorkerService> {
  const { config } = options;
  const baseLogger = options.logger;
  const logger = baseLogger.child({ component: "worker" });
  const keys = new RedisKeys(config.redisPrefix);

  const commands = createRedis(config.redisUrl);
  const reads = createRedis(config.redisUrl);
  const workerConnection = createRedis(config.redisUrl);
  const queueConnection = createRedis(config.redisUrl);
  await warnUnlessNoEviction(commands, logger);

  const ownsClient = !options.hydraClient;
  const hydraClient = options.hydraClient ?? createHydraClient({ baseUrl: config.hydraApiUrl, timeoutMs: config.hydraTimeoutMs, logger });
  const ownsMetrics = !options.metrics;
  const metrics = options.metrics ?? new RedisDeliveryMetrics(commands, keys, { logger });

  const queue = createDeliveryQueue(config, queueConnection);
  const processor = new DeliveryProcessor({ config, redis: commands, queue, hydraClient, logger: baseLogger.child({ component: "delivery" }), metrics });
  const worker = createDeliveryWorker({
    config,
    connection: workerConnection,
    processor,
    logger,
    lockDurationMs: options.lockDurationMs ?? config.jobLockDurationMs,
    stalledIntervalMs: options.stalledIntervalMs ?? Math.max(250, Math.floor((options.lockDurationMs ?? config.jobLockDurationMs) / 2)),
  });

  const router = new Router({
    config,
    logger: baseLogger,
    queue,
    readConnection: reads,
    commandConnection: commands,
    consumerName: `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
    leaseTtlMs: options.leaseTtlMs ?? config.laneLeaseTtlMs,
  });
  await router.start();
  await worker.waitUntilReady();
  logger.info({ concurrency: config.workerConcurrency, hydraApiUrl: config.hydraApiUrl }, "delivery worker started");

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const steps: [string, () => Promise<unknown>][] = [
        ["router", () => router.close()],
        ["worker", () => worker.close()],
        ["queue", () => queue.close()],
        ["metrics", async () => (ownsMetrics ? (metrics as RedisDeliveryMetrics).close() : undefined)],
        ["hydra client", async () => (ownsClient ? hydraClient.close() : undefined)],
      ];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (error) {
          logger.error({ err: error, step: name }, "worker close step failed");
        }
      }
      for (const connection of [commands, reads, workerConnection, queueConnection]) connection.disconnect();
      logger.info("delivery worker stopped");
    })();
    return closing;
  };

  return { router, worker, queue, close };
}

export { NO_DELIVERY_METRICS };
