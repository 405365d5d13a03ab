/**
 * Histogram bucket upper bounds shared by the delivery workers, which count
 * observations into them, and the admin server, which exposes them.
 */

/** Events in one batch sent to Hydra; BATCH_MAX_EVENTS is at most 500. */
export const BATCH_SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 200, 300, 400, 500] as const;

/**
 * Seconds from an event's receivedAt to its delivery. The upper bounds reach past the
 * default retry window (HYDRA_RETRY_WINDOW, 4h) so that late deliveries stay visible.
 */
export const DELIVERY_LATENCY_BUCKETS_SECONDS = [
  0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3_600, 14_400, 86_400,
] as const;

/** Returns the smallest upper bound that is at least `value`, or "+Inf". */
export function bucketFor(value: number, bounds: readonly number[]): string {
  for (const bound of bounds) {
    if (value <= bound) return String(bound);
  }
  return "+Inf";
}
