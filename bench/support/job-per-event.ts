/**
 * The one-job-per-event baseline of the end-to-end benchmark: a BullMQ queue with one
 * job per event and worker processes that post each event alone to the simulator. Same
 * Redis, same simulator and the same Hydra client as hydra-sync.
 *
 * Jobs come in one of three ways:
 * - "http": the same /v1/batch requests as hydra-sync's run go to a minimal ingest
 *   server (bench/support/job-per-event-ingest) that adds one job per event. This is
 *   the like-for-like end-to-end comparison.
 * - "direct": this process adds the jobs with Queue.addBulk while the workers run, with
 *   no HTTP ingest at all. This favours the baseline.
 * - "preloaded": every job is added before the workers start, and the clock starts when
 *   they are started, which measures delivery alone.
 */
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

import { Queue } from "bullmq";
import type { Redis } from "ioredis";

import { normalizeEventFlag } from "../../src/producer/normalize.js";
import { laneSampleEvents } from "./events.js";
import {
  BENCH_HYDRA_API_KEY,
  BenchChild,
  benchPrefix,
  cleanUp,
  type CpuSample,
  formatCpuShares,
  freePort,
  getJson,
  postJson,
  REDIS_URL,
  sampleCpu,
  stopOnFailure,
  waitForAccepted,
  type SimulatorCounters,
} from "./harness.js";
import { batchBodies, sendClosedLoop } from "./sender.js";

export const JOB_PER_EVENT_QUEUE = "job-per-event";

export interface JobPerEventData {
  /** The event as hydra-sync would store it: normalized JSON text. */
  event: string;
}

/** Options of every baseline job: completed jobs are kept as hydra-sync keeps them by default. */
export const JOB_PER_EVENT_JOB_OPTIONS = { removeOnComplete: { age: 3_600, count: 10_000 }, attempts: 5 };

/** Jobs per Queue.addBulk call in "direct" mode. */
const ADD_BULK_SIZE = 1_000;

export type BaselineIngest = "http" | "direct" | "preloaded";

export interface BaselineOptions {
  redis: Redis;
  simulatorUrl: string;
  simulatorPid: number;
  ingest: BaselineIngest;
  events: number;
  workers: number;
  concurrency: number;
  /** Events per /v1/batch request and requests in flight, in "http" mode. */
  batch: number;
  senders: number;
  timeoutMs: number;
}

export interface BaselineFigures {
  ingest: BaselineIngest;
  events: number;
  /** Seconds from the first Queue.addBulk to the simulator holding every event. */
  seconds: number;
  eventsPerS: number;
  /** Events per second between 10% and 90% accepted. */
  steadyEventsPerS: number;
  requests: number;
  duplicates: number;
  /** CPU of each process during the measured time, as formatCpuShares writes it. */
  cpu: string;
}

const SUPPORT_DIR = dirname(fileURLToPath(import.meta.url));
const INGEST_NAME = "job-per-event ingest";

/**
 * Runs the baseline once against a simulator whose counters were reset: starts the
 * worker processes (and the ingest server in "http" mode), has one job per event added,
 * and measures until the simulator accepted every event. Resets the simulator and
 * removes the run's Redis keys at the end.
 */
export async function runJobPerEvent(options: BaselineOptions): Promise<BaselineFigures> {
  const prefix = benchPrefix("job-per-event");
  const children: BenchChild[] = [];
  const queueConnection = options.redis.duplicate();
  const queue = new Queue<JobPerEventData>(JOB_PER_EVENT_QUEUE, { connection: queueConnection, prefix: `${prefix}:bull` });

  const startWorkers = async () => {
    for (let i = 0; i < options.workers; i++) {
      const child = new BenchChild(join(SUPPORT_DIR, "job-per-event-worker.js"), [], {
        name: `job-per-event worker ${i + 1}`,
        env: {
          REDIS_URL,
          REDIS_PREFIX: prefix,
          HYDRA_API_URL: options.simulatorUrl,
          HYDRA_API_KEY: BENCH_HYDRA_API_KEY,
          WORKER_CONCURRENCY: String(options.concurrency),
        },
      });
      children.push(child);
      await stopOnFailure(child, child.waitForLine(/^job-per-event worker started/, 20_000));
    }
  };

  try {
    const runId = prefix.slice(-8);
    const requests = Math.ceil(options.events / options.batch);
    const events = options.ingest === "http" ? requests * options.batch : options.events;
    let startedAt: number;
    let cpuBefore: CpuSample;
    let delivery: ReturnType<typeof waitForAccepted>;
    const cpuGroups = () => ({
      ingest: children.filter((child) => child.name === INGEST_NAME).map((child) => child.pid),
      workers: children.filter((child) => child.name !== INGEST_NAME).map((child) => child.pid),
      simulator: [options.simulatorPid],
    });

    if (options.ingest === "preloaded") {
      // Delivery only: every job waits in the queue before the first worker starts.
      await addJobsDirectly(queue, runId, events);
      cpuBefore = await sampleCpu(options.redis, cpuGroups());
      startedAt = performance.now();
      delivery = waitForAccepted(options.simulatorUrl, events, options.timeoutMs, 200);
      await startWorkers();
    } else {
      await startWorkers();
      let ingestUrl = "";
      if (options.ingest === "http") {
        const port = await freePort();
        const ingest = new BenchChild(join(SUPPORT_DIR, "job-per-event-ingest.js"), [String(port)], { name: INGEST_NAME, env: { REDIS_URL, REDIS_PREFIX: prefix } });
        children.push(ingest);
        await stopOnFailure(ingest, ingest.waitForLine(/^job-per-event ingest listening/, 10_000));
        ingestUrl = `http://127.0.0.1:${port}`;
      }

      cpuBefore = await sampleCpu(options.redis, cpuGroups());
      startedAt = performance.now();
      delivery = waitForAccepted(options.simulatorUrl, events, options.timeoutMs, 200);
      if (options.ingest === "http") {
        await sendClosedLoop({ url: ingestUrl, path: "/v1/batch", requests, concurrency: options.senders, body: batchBodies(runId, options.batch), timeoutMs: options.timeoutMs });
      } else {
        await addJobsDirectly(queue, runId, events);
      }
    }

    const { doneAt, samples: progress } = await delivery;
    const cpu = formatCpuShares(cpuBefore, await sampleCpu(options.redis, cpuGroups()), "this process");
    const stats = await getJson<SimulatorCounters>(`${options.simulatorUrl}/_sim/stats`);
    const seconds = (doneAt - startedAt) / 1_000;
    return {
      ingest: options.ingest,
      events,
      seconds,
      eventsPerS: events / seconds,
      steadyEventsPerS: steadyRate(progress, events),
      requests: stats.requests,
      duplicates: stats.duplicates,
      cpu,
    };
  } finally {
    await queue.close();
    queueConnection.disconnect();
    await cleanUp(children, options.redis, [prefix]);
    await postJson(`${options.simulatorUrl}/_sim/reset`, {});
  }
}

async function addJobsDirectly(queue: Queue<JobPerEventData>, runId: string, events: number): Promise<void> {
  const samples = laneSampleEvents();
  for (let first = 0; first < events; first += ADD_BULK_SIZE) {
    const receivedAt = new Date().toISOString();
    const jobs = [];
    for (let index = first; index < Math.min(events, first + ADD_BULK_SIZE); index++) {
      const event = normalizedEvent(samples[index % samples.length], `${runId}-${index}`, `usr_bench_${index % 500}`, receivedAt);
      jobs.push({ name: "event", data: { event }, opts: JOB_PER_EVENT_JOB_OPTIONS });
    }
    await queue.addBulk(jobs);
  }
}

/** Returns the event as the producer would store it: the given ids, receivedAt, a UTC timestamp, a valid eventFlag and no anonymousId. */
export function normalizedEvent(sample: Record<string, unknown>, messageId: string, userId: string, receivedAt: string): string {
  const timestampMs = Date.parse(String(sample.timestamp ?? ""));
  const event: Record<string, unknown> = {
    ...sample,
    messageId,
    userId,
    anonymousId: undefined,
    receivedAt,
    timestamp: new Date(Number.isFinite(timestampMs) ? timestampMs : Date.now()).toISOString(),
  };
  if (event.type === "track") {
    const properties = (sample.properties ?? {}) as Record<string, unknown>;
    event.properties = { ...properties, eventFlag: normalizeEventFlag(properties.eventFlag) };
  }
  return JSON.stringify(event);
}

/**
 * Events per second between the polls that first saw 10% and 90% of `total` accepted,
 * which leaves out start-up and the last stragglers.
 */
export function steadyRate(samples: { at: number; accepted: number }[], total: number): number {
  const low = samples.find((sample) => sample.accepted >= 0.1 * total);
  const high = samples.find((sample) => sample.accepted >= 0.9 * total);
  if (!low || !high || high.at <= low.at) return Number.NaN;
  return (high.accepted - low.accepted) / ((high.at - low.at) / 1_000);
}
