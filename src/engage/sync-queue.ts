import { Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { DeliveryError } from "../errors/delivery-error.js";
import { RedisKeys } from "../redis/keys.js";
import { ENGAGE_SYNC_QUEUE } from "./keys.js";
import { failSync, runSync, type SyncDependencies, type SyncJobData, type SyncResult } from "./sync-runner.js";

export type SyncQueue = Queue<SyncJobData, SyncResult>;

/**
 * Attempts of a sync job. With HYDRA_BACKOFF_BASE 1s and HYDRA_BACKOFF_MAX 15m they span
 * about two minutes. A longer Hydra outage fails the job, so its members stay pending
 * until the next scheduled sync sends them.
 */
export const SYNC_ATTEMPTS = 8;

/** Backoff type of sync jobs, registered by the sync worker. */
export const SYNC_BACKOFF = "engage-sync-backoff";

/** Failed sync jobs stay in the queue this long, in seconds, for operators to read in Bull Board. */
const FAILED_JOB_RETENTION_S = 7 * 24 * 3_600;

/**
 * Syncs one worker runs at once. Each sync sends its batches one after another, so this
 * bounds the requests in flight to Hydra from one process.
 */
const SYNC_CONCURRENCY = 4;

export function createSyncQueue(config: Config, connection: Redis): SyncQueue {
  return new Queue<SyncJobData, SyncResult>(ENGAGE_SYNC_QUEUE, { connection, prefix: new RedisKeys(config.redisPrefix).bullPrefix() });
}

/** Options of every sync job: a deterministic jobId, bounded retries, trimmed history. */
export function syncJobOptions(config: Config, jobId: string): JobsOptions {
  return {
    jobId,
    attempts: SYNC_ATTEMPTS,
    backoff: { type: SYNC_BACKOFF },
    removeOnComplete: { age: Math.ceil(config.completedJobRetentionMs / 1_000), count: config.completedJobCount },
    removeOnFail: { age: FAILED_JOB_RETENTION_S },
  };
}

/**
 * Returns the delay before retry `attemptsMade` of a sync job: exponential from
 * HYDRA_BACKOFF_BASE, capped at HYDRA_BACKOFF_MAX, with full jitter, and never before
 * the time a 429's Retry-After named.
 */
export function syncBackoffMs(config: Config, attemptsMade: number, error?: Error, random: () => number = Math.random): number {
  const ceiling = Math.min(config.backoffMaxMs, config.backoffBaseMs * 2 ** Math.max(0, attemptsMade - 1));
  const delay = Math.round(ceiling * random());

  if (error instanceof DeliveryError && error.retryAtMs !== undefined) {
    return Math.max(delay, error.retryAtMs - Date.now());
  }
  return delay;
}

export interface SyncWorkerOptions extends SyncDependencies {
  /** Connection the worker blocks on; BullMQ needs `maxRetriesPerRequest: null`. */
  connection: Redis;
  /** Called once a sync job is stored as completed, for syncs that ran (not skipped ones). */
  onCompleted(result: SyncResult): void;
  onFailed(data: SyncJobData, error: Error, willRetry: boolean): void;
}

/**
 * Starts the BullMQ worker of the `engage-sync` queue. An error whose `retryable` is
 * false fails the job at once. Any other error is retried with backoff, and after the
 * last attempt the sync is marked failed.
 */
export function startSyncWorker(options: SyncWorkerOptions): Worker<SyncJobData, SyncResult> {
  const { config, connection } = options;

  const processor = async (job: Job<SyncJobData, SyncResult>): Promise<SyncResult> => {
    try {
      return await runSync(options, job.data);
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      const retryable = (failure as { retryable?: unknown }).retryable !== false;
      const willRetry = retryable && job.attemptsMade + 1 < (job.opts.attempts ?? 1);
      if (!willRetry) await failSync(options, job.data, failure.message);
      options.onFailed(job.data, failure, willRetry);

      if (!retryable) throw new UnrecoverableError(failure.message);
      throw failure;
    }
  };

  const worker = new Worker<SyncJobData, SyncResult>(ENGAGE_SYNC_QUEUE, processor, {
    connection,
    prefix: new RedisKeys(config.redisPrefix).bullPrefix(),
    concurrency: SYNC_CONCURRENCY,
    settings: {
      backoffStrategy: (attemptsMade, _type, error) => syncBackoffMs(config, attemptsMade, error),
    },
  });

  // BullMQ emits "completed" once the job is stored as completed, so listeners can read it.
  worker.on("completed", (_job, result) => {
    if (result.status === "completed") options.onCompleted(result);
  });
  return worker;
}
