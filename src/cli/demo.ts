import { readFile, readdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";

import { loadConfig, type Config } from "../config/env.js";
import { startEngageService, type EngageService } from "../engage/index.js";
import { createHydraClient } from "../hydra/client.js";
import { createLogger, type Logger } from "../logging/logger.js";
import { startProducer } from "../producer/index.js";
import { assertRedisReachable, createRedis } from "../redis/connection.js";
import { RedisKeys } from "../redis/keys.js";
import { startSimulator } from "../simulator/index.js";
import { STAT } from "../types.js";
import { startWorker } from "../worker/index.js";
import { closeAll, type Closeable } from "./lifecycle.js";
import { sendFile } from "./send.js";
import { deleteKeysWithPrefix } from "../redis/delete-prefix.js";

/** The repository's examples folder, from dist/src/cli or src/cli. */
const EXAMPLES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), process.env.HYDRA_SYNC_EXAMPLES ?? "../../../examples");

const DEMO_WRITE_KEY = "demo-write-key";
const DEMO_HYDRA_API_KEY = "demo-hydra-key";
const DEMO_INITIAL_SYNC_DELAY = "5s";
const DEMO_SYNC_INTERVAL = "2s-3s";
const DELIVERY_TIMEOUT_MS = 60_000;
/** An audience of the sample events whose syncs the demo shows. */
const DEMO_AUDIENCE = "trial_power_users";

/**
 * Plays the bundled sample events through a producer, a worker, the Engage scheduler and
 * the Hydra simulator started in this process. Waits until every deliverable event
 * reached the simulator and one audience had its initial and a delta sync, then prints a
 * summary and removes the demo's Redis keys.
 */
export async function runDemo(out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const startedAt = Date.now();
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  await assertRedisReachable(redisUrl);

  const logger = createLogger(process.env.LOG_LEVEL ?? "warn", { role: "demo" });
  const parts: Closeable[] = [];
  const register = (part: Closeable) => parts.unshift(part);
  const redis = createRedis(redisUrl);
  let config: Config | undefined;

  try {
    const simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger });
    register({ name: "simulator", close: () => simulator.close() });

    config = loadConfig({
      ...process.env,
      REDIS_URL: redisUrl,
      REDIS_PREFIX: `hydra-sync-demo-${process.pid}-${Date.now().toString(36)}`,
      PRODUCER_PORT: "0",
      HYDRA_API_URL: simulator.url,
      SEGMENT_WRITE_KEY: DEMO_WRITE_KEY,
      HYDRA_API_KEY: DEMO_HYDRA_API_KEY,
      SOURCES_FILE: "",
      ENGAGE_INITIAL_SYNC_DELAY: DEMO_INITIAL_SYNC_DELAY,
      ENGAGE_SYNC_INTERVAL: DEMO_SYNC_INTERVAL,
      LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    });
    const keys = new RedisKeys(config.redisPrefix);

    const worker = await startWorker({ config, logger });
    register({ name: "worker", close: () => worker.close() });
    const hydraClient = createHydraClient({ baseUrl: config.hydraApiUrl, timeoutMs: config.hydraTimeoutMs, logger });
    const engage = await startEngageService({ config, logger, hydraClient, tickIntervalMs: 250 });
    register({ name: "engage", close: async () => { await engage.close(); await hydraClient.close(); } });
    const producer = await startProducer({ config, redis, logger });
    register({ name: "producer", close: () => producer.close() });
    const producerUrl = `http://127.0.0.1:${producer.port}`;

    out.write(`hydra-sync demo: producer ${producerUrl}, Hydra simulator ${simulator.url}, Redis ${redisUrl} (prefix ${config.redisPrefix})\n`);
    const syncs = recordSyncs(engage);

    // 1. Play the samples: the JSONL file event by event order, then each batch request as a body.
    const report = await sendFile({ file: join(EXAMPLES_DIR, "events.jsonl"), url: producerUrl, writeKey: DEMO_WRITE_KEY, progress: nullStream() });
    const batchFiles = (await readdir(join(EXAMPLES_DIR, "batch-requests"))).filter((name) => name.endsWith(".json")).sort();
    let batchEvents = 0;
    for (const name of batchFiles) {
      batchEvents += await postBatchFile(join(EXAMPLES_DIR, "batch-requests", name), producerUrl);
    }
    out.write(`sent ${report.lines} events from examples/events.jsonl and ${batchEvents} events in ${batchFiles.length} batch requests\n`);

    // 2. Wait until every deliverable event reached the simulator.
    const stats = await waitForDelivery(redis, keys, DELIVERY_TIMEOUT_MS);

    // 3. Engage: the initial syncs, then one change and the delta sync that carries it.
    const initial = await syncs.next((sync) => sync.kind === "initial" && sync.audience === DEMO_AUDIENCE, 30_000);
    const flip = await flipOneMember(producerUrl, initial.audience, initial.source);
    const delta = await syncs.next((sync) => sync.kind === "delta" && sync.audience === initial.audience && sync.sent > 0, 30_000);

    const simulatorStats = await getJson(`${simulator.url}/_sim/stats`);
    printSummary(out, { stats, simulatorStats, startedAt, initial, delta, flip });
    return 0;
  } finally {
    await closeAll(parts, logger);
    if (config) await deleteKeysWithPrefix(redis, config.redisPrefix).catch(() => {});
    redis.disconnect();
  }
}

interface SyncRecord {
  source: string;
  audience: string;
  kind: string;
  sent: number;
  failed: number;
  syncNumber: number;
  atMs: number;
}

function recordSyncs(engage: EngageService) {
  const seen: SyncRecord[] = [];
  const waiters: { match: (sync: SyncRecord) => boolean; resolve: (sync: SyncRecord) => void }[] = [];

  engage.events.on("sync:completed", (sync: Omit<SyncRecord, "atMs">) => {
    const record = { ...sync, atMs: Date.now() };
    seen.push(record);
    for (const waiter of [...waiters]) {
      if (waiter.match(record)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(record);
      }
    }
  });

  return {
    next(match: (sync: SyncRecord) => boolean, timeoutMs: number): Promise<SyncRecord> {
      const found = seen.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching Engage sync within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ match, resolve: (sync) => { clearTimeout(timer); resolve(sync); } });
      });
    },
  };
}

async function postBatchFile(path: string, producerUrl: string): Promise<number> {
  const body = await readFile(path, "utf8");
  const response = await request(`${producerUrl}/v1/batch`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: basic(DEMO_WRITE_KEY) },
    body,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`the producer responded with ${response.statusCode} to ${path}: ${text}`);
  return (JSON.parse(body) as { batch: unknown[] }).batch.length;
}

/** Sends one Engage identify that changes a member's value, so the next sync is a delta of one. */
async function flipOneMember(producerUrl: string, audience: string, _source: string): Promise<{ userId: string; value: boolean }> {
  const userId = "usr_demo_delta_member";
  const event = {
    type: "identify",
    userId,
    messageId: `personas_demo_${Date.now().toString(36)}`,
    traits: { [audience]: true, email: "demo.member@example.com" },
    context: { personas: { computation_class: "audience", computation_key: audience, computation_id: "aud_demo", namespace: "spa_demo", space_id: "spa_demo" } },
    integrations: { All: false, Hydra: true },
    sentAt: null,
  };
  const response = await request(`${producerUrl}/v1/identify`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: basic(DEMO_WRITE_KEY) },
    body: JSON.stringify(event),
  });
  await response.body.text();
  if (response.statusCode !== 200) throw new Error(`the producer responded with ${response.statusCode} to the Engage identify`);
  return { userId, value: true };
}

async function waitForDelivery(redis: ReturnType<typeof createRedis>, keys: RedisKeys, timeoutMs: number): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const stats = await readStats(redis, keys);
    const deliverable = (stats[STAT.accepted] ?? 0) - (stats[STAT.engageHeld] ?? 0) - (stats[STAT.duplicate] ?? 0);
    const done = (stats[STAT.delivered] ?? 0) + (stats[STAT.deadLettered] ?? 0);
    if (done >= deliverable) return stats;
    if (Date.now() > deadline) {
      throw new Error(`only ${done} of ${deliverable} deliverable events reached the simulator within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readStats(redis: ReturnType<typeof createRedis>, keys: RedisKeys): Promise<Record<string, number>> {
  const raw = await redis.hgetall(keys.stats());
  return Object.fromEntries(Object.entries(raw).map(([field, value]) => [field, Number(value)]));
}

function printSummary(
  out: NodeJS.WritableStream,
  input: { stats: Record<string, number>; simulatorStats: Record<string, unknown>; startedAt: number; initial: SyncRecord; delta: SyncRecord; flip: { userId: string } },
): void {
  const { stats, initial, delta } = input;
  const filtered = Object.entries(stats).filter(([field]) => field.startsWith("filtered:"));
  const rejected = Object.entries(stats).filter(([field]) => field.startsWith("rejected:"));
  const count = (field: string) => stats[field] ?? 0;

  out.write("\nSummary\n");
  out.write(`  accepted        ${count(STAT.accepted)} (of which Engage identifies held for audience syncs: ${count(STAT.engageHeld)}, duplicates: ${count(STAT.duplicate)})\n`);
  out.write(`  filtered        ${filtered.reduce((sum, [, n]) => sum + n, 0)}${filtered.map(([field, n]) => `, ${field.slice("filtered:".length)} ${n}`).join("")}\n`);
  out.write(`  rejected        ${rejected.reduce((sum, [, n]) => sum + n, 0)}${rejected.map(([field, n]) => `, ${field.slice("rejected:".length)} ${n}`).join("")}\n`);
  out.write(`  delivered       ${count(STAT.delivered)} events in ${count(STAT.batches)} batches\n`);
  out.write(`  retries         ${count(STAT.retries)}\n`);
  out.write(`  dead-lettered   ${count(STAT.deadLettered)}\n`);
  const simulator = input.simulatorStats as { requests: number; eventsAccepted: number; duplicates: number; persons: number; companies: number };
  out.write(
    `  Hydra simulator ${simulator.eventsAccepted} events accepted in ${simulator.requests} requests (Engage syncs included), ` +
      `${simulator.duplicates} duplicates, ${simulator.persons} persons, ${simulator.companies} companies\n`,
  );
  out.write(
    `  Engage          ${initial.audience}: initial sync #${initial.syncNumber} sent ${initial.sent} members ${seconds(initial.atMs - input.startedAt)} after start; ` +
      `delta sync #${delta.syncNumber} sent ${delta.sent} change ${seconds(delta.atMs - initial.atMs)} later, ` +
      `for ${input.flip.userId}, a member the demo adds after the initial sync\n`,
  );
  out.write(`                  demo timings: initial sync ${DEMO_INITIAL_SYNC_DELAY} after an audience is first seen, then every ${DEMO_SYNC_INTERVAL}; production defaults are 6h and 2h-3h\n`);
  out.write(`  elapsed         ${seconds(Date.now() - input.startedAt)}\n`);
}

function seconds(ms: number): string {
  return `${(ms / 1_000).toFixed(1)}s`;
}

function basic(writeKey: string): string {
  return `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}`;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const response = await request(url);
  return (await response.body.json()) as Record<string, unknown>;
}

function nullStream(): NodeJS.WritableStream {
  return { write: () => true } as unknown as NodeJS.WritableStream;
}


export type { Logger };
