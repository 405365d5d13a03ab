import type { Redis } from "ioredis";

import type { RedisKeys } from "../redis/keys.js";

/** Renews a lease only while this owner still holds it. */
const RENEW_SCRIPT = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`;

/** Deletes a lease only while this owner still holds it. */
const RELEASE_SCRIPT = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`;

/**
 * Lane leases: a router reads a lane only while it holds the lane's lease, so one
 * router at a time batches a lane and its jobs stay in stream order. A lease is a key
 * set with NX and a TTL, renewed by its owner; a crashed owner's lanes are free once
 * the TTL ends.
 */
export class LaneLeases {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly owner: string,
    /** How long a lease lasts without renewal, in milliseconds. */
    readonly ttlMs: number,
  ) {}

  async acquire(lane: string): Promise<boolean> {
    const reply = await this.redis.set(this.keys.laneLease(lane), this.owner, "PX", this.ttlMs, "NX");
    return reply === "OK";
  }

  /** Renews the given leases; returns the lanes whose lease this owner lost. */
  async renew(lanes: string[]): Promise<string[]> {
    if (lanes.length === 0) return [];

    const pipeline = this.redis.pipeline();
    for (const lane of lanes) {
      pipeline.eval(RENEW_SCRIPT, 1, this.keys.laneLease(lane), this.owner, this.ttlMs);
    }
    const replies = (await pipeline.exec()) ?? [];
    return lanes.filter((_, index) => replies[index]?.[1] !== 1);
  }

  async release(lane: string): Promise<void> {
    await this.redis.eval(RELEASE_SCRIPT, 1, this.keys.laneLease(lane), this.owner);
  }

  /** Records this router as alive and returns how many routers are alive. */
  async heartbeat(nowMs: number): Promise<number> {
    const key = this.keys.routers();
    const [, , count] = ((await this.redis
      .multi()
      .zadd(key, nowMs, this.owner)
      .zremrangebyscore(key, 0, nowMs - this.ttlMs)
      .zcard(key)
      .exec()) ?? []) as [unknown, unknown, [Error | null, number]];
    return count?.[1] ?? 1;
  }

  async leave(): Promise<void> {
    await this.redis.zrem(this.keys.routers(), this.owner);
  }
}
