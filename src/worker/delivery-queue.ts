import { Queue, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { DELIVERY_QUEUE, RedisKeys } from "../redis/keys.js";
import type { DeliveryJobData, DeliveryJobResult } from "./job-data.js";

export type DeliveryQueue = Queue<DeliveryJobData, DeliveryJobResult>;

/**
 * Attempts of a delivery job. The retry window (HYDRA_RETRY_WINDOW), not this number,
 * ends a failing job; BullMQ needs a finite value.
 */
export const DELIVERY_ATTEMPTS = 1_000_000;

/** Backoff type registered by the delivery worker: exponential with full jitter. */
export const HYDRA_BACKOFF = "hydra-full-jitter";

export function createDeliveryQueue(config: Config, connection: Redis): DeliveryQueue {
  const keys = new RedisKeys(config.redisPrefix);
  return new Queue<DeliveryJobData, DeliveryJobResult>(DELIVERY_QUEUE, {
    connection,
    prefix: keys.bullPrefix(),
  });
}

/**
 * Options of every delivery job. Failed jobs are dead letters and stay until an
 * operator replays or removes them; completed jobs are trimmed by age and count.
 */
export function deliveryJobOptions(config: Config, jobId: string, delayMs = 0): JobsOptions {
  return {
    jobId,
    delay: delayMs,
    attempts: DELIVERY_ATTEMPTS,
    backoff: { type: HYDRA_BACKOFF },
    removeOnComplete: {
      age: Math.ceil(config.completedJobRetentionMs / 1_000),
      count: config.completedJobCount,
    },
    removeOnFail: false,
  };
}
