/** Latency percentiles in milliseconds; null while no event was recorded. */
export interface LatencySummary {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

/** Samples kept for percentiles: 8 MB of doubles. */
const DEFAULT_CAPACITY = 1_000_000;

/**
 * Delivery latencies of accepted events. Count and max are exact. Percentiles are exact
 * up to `capacity` events; past it they come from a uniform reservoir sample of
 * `capacity` events, so memory stays bounded on long benchmarks.
 */
export class LatencyRecorder {
  private samples = new Float64Array(1_024);
  private size = 0;
  private count = 0;
  private max = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly capacity = DEFAULT_CAPACITY,
    private readonly random: () => number = Math.random,
  ) {}

  record(latencyMs: number): void {
    this.count += 1;
    this.max = Math.max(this.max, latencyMs);

    if (this.size < this.capacity) {
      if (this.size === this.samples.length) this.grow();
      this.samples[this.size] = latencyMs;
      this.size += 1;
      return;
    }

    // Reservoir sampling: the n-th value replaces a random slot with probability capacity / n.
    const slot = Math.floor(this.random() * this.count);
    if (slot < this.capacity) this.samples[slot] = latencyMs;
  }

  summary(): LatencySummary {
    if (this.count === 0) return { count: 0, p50: null, p95: null, p99: null, max: null };

    const sorted = this.samples.slice(0, this.size).sort();
    return {
      count: this.count,
      p50: nearestRank(sorted, 50),
      p95: nearestRank(sorted, 95),
      p99: nearestRank(sorted, 99),
      max: this.max,
    };
  }

  reset(): void {
    this.samples = new Float64Array(1_024);
    this.size = 0;
    this.count = 0;
    this.max = Number.NEGATIVE_INFINITY;
  }

  private grow(): void {
    const grown = new Float64Array(Math.min(this.capacity, this.samples.length * 2));
    grown.set(this.samples);
    this.samples = grown;
  }
}

function nearestRank(sorted: Float64Array, percentile: number): number {
  const rank = Math.ceil((percentile / 100) * sorted.length);
  return sorted[Math.max(0, rank - 1)];
}
