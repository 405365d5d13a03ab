import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** Returns a key prefix of its own for one test, so tests never share keys on a shared server. */
export function uniquePrefix(label = "test"): string {
  return `hs-test-${label}-${randomUUID().slice(0, 8)}`;
}

/**
 * Deletes every key under a prefix with SCAN and UNLINK. Never FLUSHALL: the Redis
 * server may be shared.
 */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1_000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== "0");
}

export function testRedis(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: null });
}
