import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { RedisKeys } from "../redis/keys.js";

/** A source whose deliveries wait: its Hydra API key is paused, or Hydra responded with 429. */
export interface HeldSource {
  source: string;
  /** "paused" after a 401 or 403; "rate_limited" after a 429. */
  reason: "paused" | "rate_limited";
  /** Milliseconds until the key expires; null when the key has no TTL. */
  remainingMs: number | null;
}

/** Reads which sources are paused or rate limited (PTTL of their keys) in one pipeline. */
export async function readHeldSources(redis: Redis, config: Config): Promise<HeldSource[]> {
  const keys = new RedisKeys(config.redisPrefix);
  const pipeline = redis.pipeline();
  for (const source of config.sources) {
    pipeline.pttl(keys.pausedSource(source.name));
    pipeline.pttl(keys.rateLimitedSource(source.name));
  }

  const replies = (await pipeline.exec()) ?? [];
  const held: HeldSource[] = [];
  config.sources.forEach((source, index) => {
    const reasons = ["paused", "rate_limited"] as const;
    reasons.forEach((reason, offset) => {
      const [error, ttl] = replies[index * 2 + offset] ?? [];
      if (error) throw error;

      // PTTL is -2 for a missing key and -1 for a key without a TTL.
      const ms = Number(ttl);
      if (ms === -2) return;
      held.push({ source: source.name, reason, remainingMs: ms === -1 ? null : ms });
    });
  });
  return held;
}
