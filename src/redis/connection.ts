import { Redis, type RedisOptions } from "ioredis";

import type { Logger } from "../logging/logger.js";

/** Redis was not reachable at start-up. Not retryable by the process itself. */
export class RedisUnavailableError extends Error {
  readonly retryable = false;

  constructor(url: string, cause: unknown) {
    super(
      `Redis at ${redactUrl(url)} is not reachable (${(cause as Error)?.message ?? cause}). ` +
        "Start one with `redis-server` or `docker compose up redis`, or set REDIS_URL.",
    );
    this.name = "RedisUnavailableError";
  }
}

/** Removes a password from a Redis URL so it can be logged. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "(invalid URL)";
  }
}

/**
 * Creates an ioredis connection. BullMQ needs `maxRetriesPerRequest: null` on the
 * connections its workers block on, so that is the default here.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
}

/**
 * Connects once, with a short timeout and no reconnection, to find out whether Redis
 * is reachable at all.
 *
 * @throws RedisUnavailableError with a message that explains how to start Redis.
 */
export async function assertRedisReachable(url: string, timeoutMs = 2_000): Promise<void> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  // ioredis reports the socket's own error (ECONNREFUSED, ENOTFOUND) only as an event.
  let socketError: Error | undefined;
  probe.on("error", (error) => {
    socketError ??= error;
  });

  try {
    await probe.connect();
    await probe.ping();
  } catch (error) {
    throw new RedisUnavailableError(url, socketError ?? error);
  } finally {
    probe.disconnect();
  }
}

/**
 * Logs a warning when Redis may evict keys. BullMQ and the lane streams lose data
 * under any maxmemory-policy other than noeviction.
 */
export async function warnUnlessNoEviction(redis: Redis, logger: Logger): Promise<void> {
  try {
    const reply = (await redis.config("GET", "maxmemory-policy")) as string[];
    const policy = reply[1];
    if (policy && policy !== "noeviction") {
      logger.warn(
        { maxmemoryPolicy: policy },
        `Redis maxmemory-policy is "${policy}", so Redis may evict queued events and jobs; set maxmemory-policy to noeviction`,
      );
    }
  } catch (error) {
    // Managed Redis services often disable CONFIG; the check is advice, not a requirement.
    logger.debug({ err: error }, "could not read maxmemory-policy with CONFIG GET");
  }
}
