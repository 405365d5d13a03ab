import type { Redis } from "ioredis";

/**
 * Deletes every key under `<prefix>:` with SCAN and UNLINK, a page at a time. Used for
 * the demo's and the benchmarks' own prefixes; it never flushes the server, which may be
 * shared.
 */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1_000);
    cursor = next;
    if (found.length > 0) await redis.unlink(...found);
  } while (cursor !== "0");
}
