/**
 * Load generators built on an undici Pool: a closed-loop sender of /v1/batch requests
 * and an open-loop sender that starts requests on a fixed schedule whatever the
 * responses do. Every loop is bounded by a request count and a time limit.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

import { Pool } from "undici";

import { BENCH_AUTHORIZATION, median, settlesWithin } from "./harness.js";
import { laneSampleEvents, withIds } from "./events.js";

const RUN_TOKEN = "@@request@@";

/**
 * Returns a function that builds the body of the n-th /v1/batch request: `count` sample
 * events with messageIds `<runId>-<n>-<index>` and userIds `usr_bench_<index>`. The JSON
 * is built once; each request only replaces a token, so the sender stays cheap.
 */
export function batchBodies(runId: string, count: number): (request: number) => string {
  const samples = laneSampleEvents();
  const batch = Array.from({ length: count }, (_, index) => withIds(samples[index % samples.length], `${runId}-${RUN_TOKEN}-${index}`, `usr_bench_${index}`));
  const template = JSON.stringify({ batch });
  return (request) => template.replaceAll(RUN_TOKEN, String(request));
}

export interface ClosedLoopResult {
  requests: number;
  /** performance.now() when the first request started and the last response ended. */
  startedAt: number;
  finishedAt: number;
  retries: number;
}

/**
 * Posts `requests` bodies to `${url}${path}`, at most `concurrency` at a time. A 5xx or
 * connection error is retried up to 5 times, as Segment's libraries do; anything else
 * but 200 fails the run.
 * @throws Error after timeoutMs, or when a request fails for good
 */
export async function sendClosedLoop(options: {
  url: string;
  path: string;
  requests: number;
  concurrency: number;
  body: (request: number) => string;
  timeoutMs: number;
}): Promise<ClosedLoopResult> {
  const pool = new Pool(options.url, { connections: options.concurrency, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const deadline = performance.now() + options.timeoutMs;
  let next = 0;
  let retries = 0;

  const sendOne = async (request: number): Promise<void> => {
    const body = options.body(request);
    for (let attempt = 1; ; attempt++) {
      if (performance.now() > deadline) throw new Error(`the sender timed out after ${options.timeoutMs} ms at request ${request} of ${options.requests}`);
      let status = 0;
      let text = "";
      try {
        const response = await pool.request({
          path: options.path,
          method: "POST",
          headers: { "content-type": "application/json", authorization: BENCH_AUTHORIZATION },
          body,
        });
        status = response.statusCode;
        text = await response.body.text();
      } catch (error) {
        text = (error as Error).message;
      }
      if (status === 200) return;
      if ((status !== 0 && status < 500) || attempt >= 5) throw new Error(`POST ${options.path} failed with status ${status}: ${text.slice(0, 300)}`);
      retries++;
      await sleep(100 * attempt);
    }
  };

  const startedAt = performance.now();
  try {
    const lanes = Array.from({ length: Math.min(options.concurrency, options.requests) }, async () => {
      while (next < options.requests) await sendOne(next++);
    });
    await Promise.all(lanes);
  } finally {
    await pool.close();
  }
  return { requests: options.requests, startedAt, finishedAt: performance.now(), retries };
}

export interface OpenLoopResult {
  sent: number;
  ok: number;
  failed: number;
  /** Achieved request rate over the sending time. */
  requestsPerS: number;
  /** Client-side response times, in milliseconds, measured from each request's scheduled start. */
  responseP50Ms: number;
  responseP99Ms: number;
  responseMaxMs: number;
  /** Largest delay between a request's scheduled start and its actual start. */
  maxStartLagMs: number;
}

/**
 * Starts requests at `rate` per second for `durationS` seconds, on schedule, without
 * waiting for earlier responses (open loop). Response times count from the scheduled
 * start, so a stalled server shows up in them instead of slowing the sender.
 * Waits at most `drainTimeoutMs` for the last responses.
 */
export async function sendOpenLoop(options: {
  url: string;
  path: string;
  rate: number;
  durationS: number;
  connections: number;
  body: (request: number) => string;
  drainTimeoutMs: number;
}): Promise<OpenLoopResult> {
  const pool = new Pool(options.url, { connections: options.connections, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const total = Math.round(options.rate * options.durationS);
  const intervalMs = 1_000 / options.rate;
  const responseMs: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let ok = 0;
  let failed = 0;
  let maxStartLagMs = 0;

  const start = performance.now();
  try {
    for (let request = 0; request < total; request++) {
      const scheduledAt = start + request * intervalMs;
      const wait = scheduledAt - performance.now();
      if (wait > 1) await sleep(wait);
      maxStartLagMs = Math.max(maxStartLagMs, performance.now() - scheduledAt);

      const sending = pool
        .request({
          path: options.path,
          method: "POST",
          headers: { "content-type": "application/json", authorization: BENCH_AUTHORIZATION },
          body: options.body(request),
        })
        .then(async (response) => {
          await response.body.dump();
          responseMs.push(performance.now() - scheduledAt);
          if (response.statusCode === 200) ok++;
          else failed++;
        })
        .catch(() => {
          failed++;
        });
      inFlight.add(sending);
      void sending.finally(() => inFlight.delete(sending));
    }
    const sentAt = performance.now();
    await settlesWithin(Promise.all(inFlight), options.drainTimeoutMs);

    const sorted = [...responseMs].sort((a, b) => a - b);
    const percentile = (p: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]);
    return {
      sent: total,
      ok,
      failed: failed + inFlight.size,
      requestsPerS: total / ((sentAt - start) / 1_000),
      responseP50Ms: median(responseMs),
      responseP99Ms: percentile(99),
      responseMaxMs: sorted.at(-1) ?? Number.NaN,
      maxStartLagMs,
    };
  } finally {
    await pool.destroy();
  }
}
