/**
 * Field layout of the delivery metrics hash (keys.deliveryMetrics()). Workers add to it
 * with HINCRBY and HINCRBYFLOAT; the admin server reads it with HGETALL.
 *
 * - `delivered:<source>`, `retried:<source>`, `dead_lettered:<source>`: event counters.
 * - `batch_size:bucket:<le>`, `batch_size:sum`, `batch_size:count`: a histogram of events
 *   per batch. Each observation adds 1 to one bucket only (the smallest upper bound
 *   that is at least the value), so the reader sums buckets to get cumulative counts.
 * - `latency:<source>:bucket:<le>`, `latency:<source>:sum`, `latency:<source>:count`:
 *   a histogram of seconds from receivedAt to delivery, the same way.
 *
 * Source names contain only letters, digits, '_' and '-', so ':' separates safely.
 */

export const COUNTER_NAMES = ["delivered", "retried", "dead_lettered"] as const;
export type DeliveryCounterName = (typeof COUNTER_NAMES)[number];

export function counterField(name: DeliveryCounterName, source: string): string {
  return `${name}:${source}`;
}

export function batchSizeField(part: "sum" | "count" | { le: string }): string {
  return typeof part === "string" ? `batch_size:${part}` : `batch_size:bucket:${part.le}`;
}

export function latencyField(source: string, part: "sum" | "count" | { le: string }): string {
  return typeof part === "string" ? `latency:${source}:${part}` : `latency:${source}:bucket:${part.le}`;
}

/** One histogram as read back: per-bucket (not cumulative) counts, sum and count. */
export interface HistogramData {
  buckets: Map<string, number>;
  sum: number;
  count: number;
}

/** The delivery metrics hash, parsed. */
export interface DeliveryMetricsSnapshot {
  counters: Record<DeliveryCounterName, Map<string, number>>;
  batchSize: HistogramData;
  latencyBySource: Map<string, HistogramData>;
}

function emptyHistogram(): HistogramData {
  return { buckets: new Map(), sum: 0, count: 0 };
}

function addToHistogram(histogram: HistogramData, part: string[], value: number): void {
  if (part[0] === "sum") histogram.sum += value;
  else if (part[0] === "count") histogram.count += value;
  else if (part[0] === "bucket" && part[1] !== undefined) histogram.buckets.set(part[1], value);
}

/** Parses the HGETALL reply of the delivery metrics hash. Unknown fields are skipped. */
export function parseDeliveryMetrics(hash: Record<string, string>): DeliveryMetricsSnapshot {
  const snapshot: DeliveryMetricsSnapshot = {
    counters: { delivered: new Map(), retried: new Map(), dead_lettered: new Map() },
    batchSize: emptyHistogram(),
    latencyBySource: new Map(),
  };

  for (const [field, text] of Object.entries(hash)) {
    const value = Number(text);
    if (!Number.isFinite(value)) continue;

    const parts = field.split(":");
    const [head] = parts;

    if ((COUNTER_NAMES as readonly string[]).includes(head) && parts.length === 2) {
      snapshot.counters[head as DeliveryCounterName].set(parts[1], value);
    } else if (head === "batch_size") {
      addToHistogram(snapshot.batchSize, parts.slice(1), value);
    } else if (head === "latency" && parts.length >= 3) {
      const source = parts[1];
      let histogram = snapshot.latencyBySource.get(source);
      if (!histogram) {
        histogram = emptyHistogram();
        snapshot.latencyBySource.set(source, histogram);
      }
      addToHistogram(histogram, parts.slice(2), value);
    }
  }

  return snapshot;
}
