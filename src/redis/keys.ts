/**
 * Redis key layout. Every key starts with REDIS_PREFIX. Keys of one lane share a hash
 * tag, `{<lane>}`, so a lane's Lua scripts touch a single Redis Cluster slot.
 *
 * A lane is one source and one partition: `<source>.p<partition>`. The partition of an
 * event is a hash of its userId (else anonymousId), so one user's events share a lane
 * and stay in order.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  laneId(sourceName: string, partition: number): string {
    return `${sourceName}.p${partition}`;
  }

  /** Stream of accepted events waiting for delivery. */
  laneStream(lane: string): string {
    return `${this.prefix}:{${lane}}:events`;
  }

  /** messageId seen within DEDUPE_WINDOW, as a key with a TTL. */
  dedupePrefix(lane: string): string {
    return `${this.prefix}:{${lane}}:dedupe:`;
  }

  /** Hash of users whose events wait behind a retry: user key to the retry job id. */
  laneHeld(lane: string): string {
    return `${this.prefix}:{${lane}}:held`;
  }

  /** List of a held user's events that arrived after the events being retried. */
  laneParked(lane: string, userKey: string): string {
    return `${this.prefix}:{${lane}}:parked:${userKey}`;
  }

  /** Lease of the router that owns the lane. */
  laneLease(lane: string): string {
    return `${this.prefix}:{${lane}}:lease`;
  }

  /**
   * Hash tag of a source's Engage keys. Lane ids end in `.p<n>`, so `<source>.engage`
   * never equals a lane id, whatever the source names are.
   */
  engageTag(sourceName: string): string {
    return `${sourceName}.engage`;
  }

  /** Stream of Engage identify events of one source, consumed by the Engage membership store. */
  engageStream(sourceName: string): string {
    return `${this.prefix}:{${this.engageTag(sourceName)}}:events`;
  }

  /** Stream of events rejected at ingest, kept for REJECTED_RETENTION. */
  rejectedStream(): string {
    return `${this.prefix}:rejected`;
  }

  /** Hash of counters: accepted, filtered and rejected by reason, delivered, dead-lettered. */
  stats(): string {
    return `${this.prefix}:stats`;
  }

  /** Sorted set of live routers, scored by their last heartbeat in epoch milliseconds. */
  routers(): string {
    return `${this.prefix}:routers`;
  }

  /** Hydra API key paused after a 401 or 403, by source name, with a TTL. */
  pausedSource(sourceName: string): string {
    return `${this.prefix}:paused:${sourceName}`;
  }

  /** Time before which no request goes to Hydra for a source, after a 429. */
  rateLimitedSource(sourceName: string): string {
    return `${this.prefix}:rate-limited:${sourceName}`;
  }

  /**
   * Hash of delivery metrics that workers flush about once a second: counters by source
   * and histogram bucket counts, read by the admin server's /metrics.
   */
  deliveryMetrics(): string {
    return `${this.prefix}:metrics:delivery`;
  }

  /** Prefix that BullMQ puts before its queue keys. */
  bullPrefix(): string {
    return `${this.prefix}:bull`;
  }
}

/** Consumer group that the routers read lane streams with. */
export const DELIVERY_GROUP = "delivery";

/** BullMQ queue of delivery jobs: one batch of one lane each. */
export const DELIVERY_QUEUE = "hydra-delivery";
