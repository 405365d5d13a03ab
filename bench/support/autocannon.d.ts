/**
 * The part of autocannon 9's programmatic API that the benchmarks use. The package ships
 * no type declarations.
 */
declare module "autocannon" {
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    p50: number;
    p90: number;
    p97_5: number;
    p99: number;
  }

  export interface Options {
    url: string;
    connections?: number;
    pipelining?: number;
    /** Seconds. */
    duration?: number;
    amount?: number;
    /** Seconds before a request counts as timed out. */
    timeout?: number;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** Replaces every `[<id>]` in the body with one new id per request. */
    idReplacement?: boolean;
    title?: string;
  }

  export interface Result {
    title?: string;
    /** Seconds. */
    duration: number;
    requests: Histogram & { total: number; sent: number };
    /** Milliseconds. */
    latency: Histogram;
    throughput: Histogram & { total: number };
    errors: number;
    timeouts: number;
    non2xx: number;
    "2xx": number;
    statusCodeStats: Record<string, { count: number }>;
  }

  function autocannon(options: Options): Promise<Result>;
  export default autocannon;
}
