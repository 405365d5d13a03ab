import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { Logger } from "../logging/logger.js";
import { RedisKeys } from "../redis/keys.js";
import { EventAppender } from "./append.js";
import { SourceDirectory } from "./auth.js";
import { MAX_EVENT_BYTES, TrackingHandler } from "./handler.js";
import { EventIngest } from "./ingest.js";
import { ProducerHttpServer } from "./server.js";

export { MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES } from "./handler.js";
export { signWebhookBody, SIGNATURE_HEADER } from "./webhook.js";

/**
 * Counters of the producer's outcomes by event. `accepted` counts events handed to storage
 * (lane and Engage streams) in a request that got 200, duplicates included. `duplicate`
 * counts the ones Redis skipped because they were stored within the dedupe window.
 * `rejected` counts invalid events by reason. It also counts whole requests that failed
 * before their events were read (bad write key, invalid JSON, too large), one each, by
 * error code.
 */
export interface ProducerMetrics {
  accepted(source: string, count: number): void;
  rejected(reason: string, count: number): void;
  filtered(reason: string, count: number): void;
  duplicate(count: number): void;
}

export interface ProducerOptions {
  config: Config;
  /** ioredis connection created by the caller; the producer duplicates it with auto-pipelining and leaves it open. */
  redis: Redis;
  logger: Logger;
  metrics?: ProducerMetrics;
  /** Returns true when it handled the request; used for /healthz, /readyz and /metrics. */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface Producer {
  readonly port: number;
  readonly server: Server;
  /** True once close() was called: new requests get 503 with Connection: close. */
  readonly draining: boolean;
  /** Stops accepting requests, waits for in-flight requests to finish, then closes its Redis connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * Maximum wait for a Redis reply before the request fails with 503. The client retries,
 * and the dedupe keys keep events stored by the timed-out call from being stored twice.
 */
const REDIS_COMMAND_TIMEOUT_MS = 5_000;

/** Interval between two logs of Redis connection errors, which repeat on every reconnect. */
const REDIS_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Starts the producer: Segment's HTTP Tracking API on config.producerHost and
 * config.producerPort (0 = any free port), storing events in Redis streams.
 */
export async function startProducer(options: ProducerOptions): Promise<Producer> {
  const { config } = options;
  const logger = options.logger.child({ component: "producer" });
  const keys = new RedisKeys(config.redisPrefix);

  // Concurrent requests share round trips on this connection: auto-pipelining sends the
  // commands issued within one event loop tick together. A command fails after one
  // reconnection attempt so that requests get 503 while Redis is down, not a hang.
  const redis = options.redis.duplicate({
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectionName: "hydra-sync-producer",
  });
  let lastErrorLogAt = 0;
  let suppressedErrors = 0;
  redis.on("error", (error: Error) => {
    const now = Date.now();
    if (now - lastErrorLogAt < REDIS_ERROR_LOG_INTERVAL_MS) {
      suppressedErrors++;
      return;
    }
    logger.error({ err: error, suppressedErrors }, "producer Redis connection failed; reconnecting");
    lastErrorLogAt = now;
    suppressedErrors = 0;
  });

  const handler = new TrackingHandler({
    directory: new SourceDirectory(config.sources),
    ingest: new EventIngest(keys, config.sources, config.partitions, MAX_EVENT_BYTES),
    appender: new EventAppender(redis, keys, config.dedupeWindowMs, config.rejectedRetentionMs, logger),
    webhookSecret: config.webhookSecret,
    logger,
    metrics: options.metrics,
  });

  const http = new ProducerHttpServer({
    host: config.producerHost,
    port: config.producerPort,
    handler,
    logger,
    extraRoutes: options.extraRoutes,
  });

  try {
    await http.listen();
  } catch (error) {
    redis.disconnect();
    throw error;
  }

  logger.info(
    {
      host: config.producerHost,
      port: http.port,
      sources: config.sources.map((source) => source.name),
      webhook: config.webhookSecret !== undefined,
      dedupeWindowMs: config.dedupeWindowMs,
      partitions: config.partitions,
    },
    "producer listening",
  );

  let closing: Promise<void> | undefined;
  const port = http.port;

  return {
    port,
    server: http.server,
    get draining() {
      return http.draining;
    },
    close() {
      closing ??= (async () => {
        logger.info({ port }, "producer stopping; waiting for in-flight requests");
        await http.close();
        try {
          await redis.quit();
        } catch {
          redis.disconnect();
        }
        logger.info({ port }, "producer stopped");
      })();
      return closing;
    },
  };
}
