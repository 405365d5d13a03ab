import { Queue } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { ENGAGE_SYNC_QUEUE } from "../engage/keys.js";
import { DELIVERY_QUEUE, RedisKeys } from "../redis/keys.js";


/** Every BullMQ queue the service uses, in the order operators see them. */
export const SERVICE_QUEUE_NAMES = [DELIVERY_QUEUE, ENGAGE_SYNC_QUEUE] as const;

/** Job states that status and /metrics count, in BullMQ's words. */
export const COUNTED_JOB_STATES = ["waiting", "active", "delayed", "prioritized", "paused", "failed", "completed"] as const;
export type CountedJobState = (typeof COUNTED_JOB_STATES)[number];

export interface QueueCounts {
  queue: string;
  counts: Record<CountedJobState, number>;
}

/**
 * Opens a Queue object for `name` under the service's BullMQ prefix. The queue shares
 * `connection` and does not close it; close the queue, then the connection.
 */
export function openQueue(config: Config, connection: Redis, name: string): Queue {
  return new Queue(name, { connection, prefix: new RedisKeys(config.redisPrefix).bullPrefix() });
}

/** Opens every queue the service uses; see openQueue. */
export function openServiceQueues(config: Config, connection: Redis): Queue[] {
  return SERVICE_QUEUE_NAMES.map((name) => openQueue(config, connection, name));
}

/** Reads the job counts of each queue by state. */
export async function readQueueCounts(queues: Queue[]): Promise<QueueCounts[]> {
  return Promise.all(
    queues.map(async (queue) => {
      const raw = await queue.getJobCounts(...COUNTED_JOB_STATES);
      const counts = Object.fromEntries(COUNTED_JOB_STATES.map((state) => [state, raw[state] ?? 0]));
      return { queue: queue.name, counts: counts as Record<CountedJobState, number> };
    }),
  );
}
