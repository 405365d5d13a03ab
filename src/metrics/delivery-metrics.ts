import type { Redis } from "ioredis";

import type { Logger } from "../logging/logger.js";
import type { RedisKeys } from "../redis/keys.js";
import { BATCH_SIZE_BUCKETS, bucketFor, DELIVERY_LATENCY_BUCKETS_SECONDS } from "./buckets.js";
import { batchSizeField, counterField, latencyField } from "./delivery-metrics-hash.js";

/** Delivery outcomes that the delivery worker reports. */
export interface DeliveryMetrics {
  /** Events Hydra accepted; `ageMs` contains now − receivedAt of each event, in milliseconds. */
  delivered(source: string, count: number, ageMs: number[]): void;
  /** Events that will be sent again after a retryable failure. */
  retried(source: string, count: number): void;
  /** Events whose job ended failed (a dead letter). */
  deadLettered(source: string, count: number): void;
  /** Events in one batch sent to Hydra. */
  batchSize(count: number): void;
}

/** DeliveryMetrics that records nothing, for tests and tools without metrics. */
export const NO_DELIVERY_METRICS: DeliveryMetrics = {
  delivered() {},
  retried() {},
  deadLettered() {},
  batchSize() {},
};

export interface RedisDeliveryMetricsOptions {
  /** Time between flushes to Redis, in milliseconds. @defaultValue 1000 */
  flushIntervalMs?: number;
  logger?: Logger;
}

/** Failed flushes between two repeated warnings, so a Redis outage logs about once a minute. */
const FAILURES_PER_WARNING = 60;

/**
 * DeliveryMetrics that add up in memory and flush to the delivery metrics hash in Redis
 * with one MULTI pipeline about once a second. Workers have no HTTP server, so the admin
 * server's /metrics reads this hash at scrape time.
 *
 * A flush that fails keeps its increments for the next flush, so counts are delayed,
 * not lost, while Redis is unreachable. Increments still in memory when the process
 * dies without close() are lost.
 */
export class RedisDeliveryMetrics implements DeliveryMetrics {
  private counts = new Map<string, number>();
  private sums = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private failedFlushes = 0;
  private closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly options: RedisDeliveryMetricsOptions = {},
  ) {
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1_000);
    this.timer.unref();
  }

  delivered(source: string, count: number, ageMs: number[]): void {
    this.add(this.counts, counterField("delivered", source), count);

    for (const age of ageMs) {
      const seconds = Math.max(0, age) / 1_000;
      const le = bucketFor(seconds, DELIVERY_LATENCY_BUCKETS_SECONDS);
      this.add(this.counts, latencyField(source, { le }), 1);
      this.add(this.counts, latencyField(source, "count"), 1);
      this.add(this.sums, latencyField(source, "sum"), seconds);
    }
  }

  retried(source: string, count: number): void {
    this.add(this.counts, counterField("retried", source), count);
  }

  deadLettered(source: string, count: number): void {
    this.add(this.counts, counterField("dead_lettered", source), count);
  }

  batchSize(count: number): void {
    this.add(this.counts, batchSizeField({ le: bucketFor(count, BATCH_SIZE_BUCKETS) }), 1);
    this.add(this.counts, batchSizeField("count"), 1);
    this.add(this.counts, batchSizeField("sum"), count);
  }

  /** Writes the increments gathered since the last flush. Never rejects. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeIncrements());
    return this.flushing;
  }

  /** Stops the timer and flushes what is left. */
  async close(): Promise<void> {
    if (this.closed) return this.flushing;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }

  private add(map: Map<string, number>, field: string, value: number): void {
    if (value === 0 || !Number.isFinite(value)) return;
    map.set(field, (map.get(field) ?? 0) + value);
  }

  private async writeIncrements(): Promise<void> {
    if (this.counts.size === 0 && this.sums.size === 0) return;

    const counts = this.counts;
    const sums = this.sums;
    this.counts = new Map();
    this.sums = new Map();

    const key = this.keys.deliveryMetrics();
    const transaction = this.redis.multi();
    for (const [field, value] of counts) transaction.hincrby(key, field, value);
    for (const [field, value] of sums) transaction.hincrbyfloat(key, field, value);

    try {
      const replies = await transaction.exec();
      const failed = replies?.find(([error]) => error);
      if (failed) throw failed[0];
    } catch (error) {
      for (const [field, value] of counts) this.add(this.counts, field, value);
      for (const [field, value] of sums) this.add(this.sums, field, value);
      this.reportFailure(error);
      return;
    }

    if (this.failedFlushes > 0) {
      this.options.logger?.info({ failedFlushes: this.failedFlushes }, "delivery metrics flushed to Redis again");
      this.failedFlushes = 0;
    }
  }

  private reportFailure(error: unknown): void {
    this.failedFlushes++;
    if (this.failedFlushes % FAILURES_PER_WARNING === 1) {
      this.options.logger?.warn(
        { err: error, failedFlushes: this.failedFlushes },
        "could not flush delivery metrics to Redis; keeping them in memory for the next flush",
      );
    }
  }
}
