import type { HistogramData } from "./delivery-metrics-hash.js";

interface HistogramSample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * A Prometheus histogram whose bucket counts were counted elsewhere and stored in Redis.
 * prom-client's Histogram only counts observations made in this process, so the admin
 * server registers this object instead: prom-client's Registry calls get() at scrape time
 * and formats the result like any histogram.
 */
export class StoredHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly series: { labels: Record<string, string>; data: HistogramData }[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  /** Adds one label set with its per-bucket (not cumulative) counts. */
  add(labels: Record<string, string>, data: HistogramData): void {
    this.series.push({ labels, data });
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramSample[] }> {
    const values: HistogramSample[] = [];
    for (const { labels, data } of this.series) values.push(...this.samplesOf(labels, data));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  private samplesOf(labels: Record<string, string>, data: HistogramData): HistogramSample[] {
    // Bounds stored by an older release with other buckets still count, in order.
    const bounds = new Set<number>(this.bounds);
    for (const le of data.buckets.keys()) {
      if (le !== "+Inf" && Number.isFinite(Number(le))) bounds.add(Number(le));
    }

    const samples: HistogramSample[] = [];
    let cumulative = 0;
    for (const bound of [...bounds].sort((a, b) => a - b)) {
      cumulative += data.buckets.get(String(bound)) ?? 0;
      samples.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: bound }, value: cumulative });
    }
    cumulative += data.buckets.get("+Inf") ?? 0;

    samples.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: "+Inf" }, value: cumulative });
    samples.push({ metricName: `${this.name}_sum`, labels, value: data.sum });
    samples.push({ metricName: `${this.name}_count`, labels, value: cumulative });
    return samples;
  }
}
