/**
 * Checks that no event is lost when a delivery worker is killed with SIGKILL.
 *
 * Starts the Hydra simulator and the producer in this process and a worker as a child
 * process (`hydra-sync worker`, JOB_LOCK_DURATION and LANE_LEASE_TTL of 3 s). It sends
 * N track events with distinct messageIds, SIGKILLs the worker at the chosen phase,
 * starts a new worker, and waits until the simulator accepted every messageId.
 * Duplicates are allowed: delivery is at least once and Hydra drops a repeated messageId.
 *
 *   --phase delivery  (default) every Hydra request takes --latency-ms, and the worker
 *                     is killed while delivery jobs are active, so batches are in flight.
 *   --phase routing   Hydra responds at once, and the worker is killed while its router
 *                     has read stream entries and not acknowledged (XACK) them yet.
 *
 * After each kill it prints what the dead worker left: active jobs, and stream entries
 * pending in the consumer group, with those already in a job (added, not acknowledged).
 *
 * Usage: npm run build && node dist/scripts/sigkill-check.js [--events 20000] [--phase delivery|routing]
 *          [--kills 1] [--latency-ms 1000] [--send-seconds 5] [--timeout 180] [--verbose]
 * Needs Redis at REDIS_URL (default redis://127.0.0.1:6379). Keys go under
 * `hs-sigkill-<random>` and are unlinked at the end. Prints
 * "sent N, delivered N unique, lost 0, duplicates D" and exits 1 when an event is lost.
 */
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import { Queue } from "bullmq";
import { request } from "undici";

import { laneSampleEvents, withIds } from "../bench/support/events.js";
import { BENCH_AUTHORIZATION, type BenchChild, benchPrefix, connectRedis, deletePrefix, roleEnv, startWorkerChild } from "../bench/support/harness.js";
import { batchJobId } from "../src/batching/router.js";
import { loadConfig } from "../src/config/env.js";
import { createLogger } from "../src/logging/logger.js";
import { startProducer } from "../src/producer/index.js";
import { DELIVERY_GROUP, DELIVERY_QUEUE, RedisKeys } from "../src/redis/keys.js";
import { startSimulator } from "../src/simulator/index.js";

const EVENTS_PER_REQUEST = 100;
/** Maximum wait for the kill condition of one kill. */
const KILL_CONDITION_TIMEOUT_MS = 60_000;

type Phase = "delivery" | "routing";

interface Options {
  events: number;
  phase: Phase;
  kills: number;
  latencyMs: number;
  sendSeconds: number;
  timeoutMs: number;
  verbose: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      events: { type: "string", default: "20000" },
      phase: { type: "string", default: "delivery" },
      kills: { type: "string", default: "1" },
      "latency-ms": { type: "string", default: "1000" },
      "send-seconds": { type: "string", default: "5" },
      timeout: { type: "string", default: "180" },
      verbose: { type: "boolean", default: false },
    },
  });
  const options: Options = {
    events: Number(values.events),
    phase: values.phase as Phase,
    kills: Number(values.kills),
    latencyMs: Number(values["latency-ms"]),
    sendSeconds: Number(values["send-seconds"]),
    timeoutMs: Number(values.timeout) * 1_000,
    verbose: values.verbose ?? false,
  };
  if (!Number.isInteger(options.events) || options.events < EVENTS_PER_REQUEST || options.events % EVENTS_PER_REQUEST !== 0) {
    throw new Error(`Invalid --events ${values.events}: use a multiple of ${EVENTS_PER_REQUEST}.`);
  }
  if (options.phase !== "delivery" && options.phase !== "routing") throw new Error(`Invalid --phase ${values.phase}: use delivery or routing.`);
  if (!Number.isInteger(options.kills) || options.kills < 1 || options.kills > 10) throw new Error(`Invalid --kills ${values.kills}: use 1 to 10.`);
  // The worker's Hydra timeout is 2 s; a longer latency would time every request out.
  if (!Number.isInteger(options.latencyMs) || options.latencyMs < 1 || options.latencyMs > 1_500) throw new Error(`Invalid --latency-ms ${values["latency-ms"]}: use 1 to 1500.`);
  if (!(options.sendSeconds > 0 && options.sendSeconds <= 60)) throw new Error(`Invalid --send-seconds ${values["send-seconds"]}: use more than 0 and at most 60.`);
  return options;
}

async function main(): Promise<number> {
  const options = parseOptions();
  const prefix = benchPrefix("sigkill").replace("hs-bench-", "hs-");
  const runId = prefix.slice(-8);
  const logger = createLogger("silent");
  const redis = connectRedis();
  const keys = new RedisKeys(prefix);

  // Deliveries of each messageId of this run, from the simulator's record of every request.
  const deliveries = new Map<string, number>();
  const simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger, recordEvents: true });
  simulator.on("batch", (batch) => {
    if (batch.status !== 200 && batch.status !== 207) return;
    for (const messageId of batch.messageIds ?? []) deliveries.set(messageId, (deliveries.get(messageId) ?? 0) + 1);
  });
  if (options.phase === "delivery") simulator.addFault({ latencyMs: options.latencyMs, count: 1_000_000 });

  const env = roleEnv(prefix, simulator.url, { JOB_LOCK_DURATION: "3s", LANE_LEASE_TTL: "3s", HYDRA_TIMEOUT: "2s" });
  const config = loadConfig({ ...env, PRODUCER_PORT: "0", LOG_LEVEL: "silent" });
  const producer = await startProducer({ config, redis, logger });
  const queueConnection = redis.duplicate();
  const queue = new Queue(DELIVERY_QUEUE, { connection: queueConnection, prefix: keys.bullPrefix() });
  const workers: BenchChild[] = [];

  try {
    console.log(`sigkill-check: ${options.events} events, phase ${options.phase}, ${options.kills} kill(s), prefix ${prefix}`);
    workers.push(await startWorkerChild(prefix, simulator.url, { env, echo: options.verbose, name: "worker 1" }));

    const sentIds = new Set<string>();
    const totalRequests = options.events / EVENTS_PER_REQUEST;
    let sentRequests = 0;
    const sending = sendEvents(producer.port, runId, totalRequests, options.sendSeconds, sentIds, () => sentRequests++);
    // Awaited after the kills; this handler only keeps an early failure from being unhandled meanwhile.
    sending.catch(() => {});

    let victimStartedAt = Date.now();
    for (let kill = 1; kill <= options.kills; kill++) {
      // Spread the kills over the send: the k-th waits until k / (kills + 1) of it went out.
      const fromRequest = Math.floor((kill * totalRequests) / (options.kills + 1));
      const victim: Victim = { child: workers.at(-1)!, startedAt: victimStartedAt };
      const probe = new LeftoverProbe(redis, keys, config.partitions, queue);
      await waitForKillCondition(options.phase, () => sentRequests >= fromRequest, probe, victim);

      victim.child.signal("SIGKILL");
      if (!(await victim.child.waitForExit(5_000))) throw new Error(`worker pid ${victim.child.pid} did not exit after SIGKILL`);
      const left = await probe.leftovers(victim);
      console.log(
        `kill ${kill}: SIGKILL to worker pid ${victim.child.pid} after ${sentRequests * EVENTS_PER_REQUEST} events were sent; it left ${left.activeJobs} active job(s) ` +
          `and ${left.pendingEntries} stream entries read and not acknowledged in ${left.pendingLanes} lane(s), ${left.pendingInJobs} of them already in a job`,
      );
      victimStartedAt = Date.now();
      workers.push(await startWorkerChild(prefix, simulator.url, { env, echo: options.verbose, name: `worker ${kill + 1}` }));
    }
    await sending;

    const deadline = performance.now() + options.timeoutMs;
    while (countDelivered(sentIds, deliveries) < sentIds.size && performance.now() < deadline) await sleep(200);

    const unique = countDelivered(sentIds, deliveries);
    const lost = sentIds.size - unique;
    let duplicates = 0;
    for (const [messageId, count] of deliveries) if (sentIds.has(messageId)) duplicates += count - 1;
    const unexpected = [...deliveries.keys()].filter((messageId) => !sentIds.has(messageId)).length;
    const stats = simulator.state.stats();
    const failedJobs = await queue.getFailedCount();

    console.log(`simulator: ${stats.requests} requests, ${stats.eventsAccepted} events accepted, ${stats.duplicates} duplicates; dead-lettered jobs: ${failedJobs}`);
    if (unexpected > 0) console.log(`unexpected: ${unexpected} messageIds that were never sent reached the simulator`);
    console.log(`sent ${sentIds.size}, delivered ${unique} unique, lost ${lost}, duplicates ${duplicates}`);
    return lost === 0 && unexpected === 0 ? 0 : 1;
  } finally {
    for (const worker of [...workers].reverse()) await worker.stop();
    await queue.close();
    queueConnection.disconnect();
    await producer.close();
    await simulator.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  }
}

/**
 * Posts `requests` batches of EVENTS_PER_REQUEST track events, spread evenly over
 * `seconds`, and adds each messageId to `sentIds` once the producer responded 200.
 */
async function sendEvents(port: number, runId: string, requests: number, seconds: number, sentIds: Set<string>, onSent: () => void): Promise<void> {
  const samples = laneSampleEvents().filter((event) => event.type === "track");
  const intervalMs = (seconds * 1_000) / requests;
  const start = performance.now();

  for (let index = 0; index < requests; index++) {
    const wait = start + index * intervalMs - performance.now();
    if (wait > 0) await sleep(wait);

    const messageIds: string[] = [];
    const batch = Array.from({ length: EVENTS_PER_REQUEST }, (_, position) => {
      const number = index * EVENTS_PER_REQUEST + position;
      const messageId = `sigkill-${runId}-${number}`;
      messageIds.push(messageId);
      return withIds(samples[number % samples.length], messageId, `usr_sigkill_${number % 500}`);
    });
    const response = await request(`http://127.0.0.1:${port}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: BENCH_AUTHORIZATION },
      body: JSON.stringify({ batch }),
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`the producer responded ${response.statusCode} to request ${index}: ${text.slice(0, 300)}`);
    for (const messageId of messageIds) sentIds.add(messageId);
    onSent();
  }
}

interface Victim {
  child: BenchChild;
  /** Epoch milliseconds just before the worker was started. */
  startedAt: number;
}

/**
 * Waits until the send reached its kill point and the live worker is in the phase to
 * kill it in: running a delivery job it started itself, or holding stream entries its
 * router read and did not acknowledge. Work left by an earlier, killed worker does not count.
 */
async function waitForKillCondition(phase: Phase, sentEnough: () => boolean, probe: LeftoverProbe, victim: Victim): Promise<void> {
  const deadline = performance.now() + KILL_CONDITION_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (sentEnough()) {
      if (phase === "delivery" && (await probe.activeJobsOf(victim)) > 0) return;
      if (phase === "routing" && (await probe.pending(victim)).entries > 0) return;
    }
    await sleep(phase === "routing" ? 2 : 10);
  }
  throw new Error(`the ${phase} kill condition did not occur within ${KILL_CONDITION_TIMEOUT_MS} ms`);
}

/** Reads from Redis the delivery jobs and the stream entries that a worker owns. */
class LeftoverProbe {
  private readonly lanes: string[] = [];
  private readonly jobKeyPrefix: string;

  constructor(
    private readonly redis: ReturnType<typeof connectRedis>,
    private readonly keys: RedisKeys,
    partitions: number,
    private readonly queue: Queue,
  ) {
    for (let partition = 0; partition < partitions; partition++) this.lanes.push(keys.laneId("default", partition));
    this.jobKeyPrefix = `${keys.bullPrefix()}:${DELIVERY_QUEUE}:`;
  }

  /** Active delivery jobs that started after the worker did, so only it can be running them. */
  async activeJobsOf(victim: Victim): Promise<number> {
    const ids = await this.redis.lrange(`${this.jobKeyPrefix}active`, 0, -1);
    if (ids.length === 0) return 0;
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(`${this.jobKeyPrefix}${id}`, "processedOn");
    const replies = (await pipeline.exec()) ?? [];
    return replies.filter(([error, processedOn]) => !error && Number(processedOn) >= victim.startedAt).length;
  }

  /** Counts the stream entries pending under the worker's consumer, whose name contains the worker's pid. */
  async pending(victim: Victim): Promise<{ entries: number; lanes: { lane: string; consumer: string }[] }> {
    const pipeline = this.redis.pipeline();
    for (const lane of this.lanes) pipeline.xpending(this.keys.laneStream(lane), DELIVERY_GROUP);
    const replies = (await pipeline.exec()) ?? [];

    const marker = `-${victim.child.pid}-`;
    let entries = 0;
    const lanes: { lane: string; consumer: string }[] = [];
    replies.forEach(([error, reply], index) => {
      // A lane stream without a consumer group yet fails with NOGROUP, so nothing is pending there.
      if (error) return;
      const consumers = ((reply as [number, string | null, string | null, [string, string][] | null])[3] ?? []).filter(([name]) => name.includes(marker));
      for (const [consumer, count] of consumers) {
        entries += Number(count);
        lanes.push({ lane: this.lanes[index], consumer });
      }
    });
    return { entries, lanes };
  }

  /**
   * Reads what a killed worker left: its active jobs, its pending stream entries, and how
   * many of those are already in a job (added to BullMQ, not acknowledged in the stream).
   */
  async leftovers(victim: Victim): Promise<{ activeJobs: number; pendingEntries: number; pendingLanes: number; pendingInJobs: number }> {
    const activeJobs = await this.activeJobsOf(victim);
    const pending = await this.pending(victim);

    let pendingInJobs = 0;
    for (const { lane, consumer } of pending.lanes) {
      const stream = this.keys.laneStream(lane);
      const entries = (await this.redis.xpending(stream, DELIVERY_GROUP, "-", "+", 100_000, consumer)) as [string, ...unknown[]][];
      const pendingIds = new Set(entries.map(([id]) => id));
      // A batch job's id is the lane and its first entry id; follow the jobs from the oldest pending entry.
      let index = 0;
      while (index < entries.length) {
        const job = await this.queue.getJob(batchJobId(lane, entries[index][0]));
        if (!job) break;
        const entryIds: string[] = job.data.entryIds;
        pendingInJobs += entryIds.filter((id) => pendingIds.has(id)).length;
        index += entryIds.length;
      }
    }
    return { activeJobs, pendingEntries: pending.entries, pendingLanes: pending.lanes.length, pendingInJobs };
  }
}

function countDelivered(sentIds: Set<string>, deliveries: Map<string, number>): number {
  let count = 0;
  for (const messageId of sentIds) if (deliveries.has(messageId)) count++;
  return count;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`sigkill-check failed: ${error instanceof Error ? error.stack : error}`);
    process.exitCode = 2;
  },
);
