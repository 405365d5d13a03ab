import { Worker } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { backoffDelayMs } from "../hydra/backoff.js";
import type { Logger } from "../logging/logger.js";
import { DELIVERY_QUEUE, RedisKeys } from "../redis/keys.js";
import { HYDRA_BACKOFF } from "./delivery-queue.js";
import type { DeliveryProcessor } from "./delivery-processor.js";
import type { DeliveryJobData, DeliveryJobResult } from "./job-data.js";

export interface DeliveryWorkerOptions {
  config: Config;
  connection: Redis;
  processor: DeliveryProcessor;
  logger: Logger;
  /** How long a job's lock lasts; a killed worker's job runs again after it. @defaultValue 30000 */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. @defaultValue 15000 */
  stalledIntervalMs?: number;
}

/**
 * Creates the BullMQ worker of the hydra-delivery queue. A job whose worker died is
 * stalled, and BullMQ moves it back to wait. maxStalledCount is high because a batch
 * must never be failed only for having been interrupted.
 */
export function createDeliveryWorker(options: DeliveryWorkerOptions): Worker<DeliveryJobData, DeliveryJobResult> {
  const { config, processor, logger } = options;
  const keys = new RedisKeys(config.redisPrefix);

  const worker = new Worker<DeliveryJobData, DeliveryJobResult>(DELIVERY_QUEUE, (job, token) => processor.process(job, token), {
    connection: options.connection,
    prefix: keys.bullPrefix(),
    concurrency: config.workerConcurrency,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: options.stalledIntervalMs ?? 15_000,
    maxStalledCount: 1_000,
    settings: {
      backoffStrategy: (attemptsMade: number, type?: string) => {
        if (type !== HYDRA_BACKOFF) return 0;
        return backoffDelayMs(attemptsMade, config.backoffBaseMs, config.backoffMaxMs);
      },
    },
  });

  worker.on("error", (error) => logger.error({ err: error }, "delivery worker error"));
  worker.on("stalled", (jobId) => logger.warn({ jobId }, "delivery job stalled; it runs again"));
  worker.on("failed", (job, error) => {
    if (job && job.finishedOn) logger.debug({ jobId: job.id, err: error.message }, "delivery job failed for good");
  });
  return worker;
}
