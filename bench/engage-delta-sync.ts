/**
 * Benchmark of an Engage delta sync: an audience of N members, C of them changed since
 * the last sync. Shows that the sync's time and Redis round trips follow C, not N, and
 * measures Redis memory per member.
 *
 * Run: npm run build && node dist/bench/engage-delta-sync.js
 * Environment: REDIS_URL (default redis://127.0.0.1:6379). Keys go under a prefix of
 * their own, `hs-bench-engage-<random>`, and are removed with UNLINK at the end.
 * Hydra is an in-process fake client that accepts every event, so the figures are
 * hydra-sync's own cost: building events, Redis reads and writes.
 */
import { randomUUID } from "node:crypto";
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";

import { loadConfig, type Config } from "../src/config/env.js";
import { EngageConsumer } from "../src/engage/consumer.js";
import { EngageKeys } from "../src/engage/keys.js";
import { runSync } from "../src/engage/sync-runner.js";
import type { BatchRequest, EventResult, HydraClient } from "../src/hydra/types.js";
import { createLogger } from "../src/logging/logger.js";
import { RedisKeys } from "../src/redis/keys.js";
import { ENTRY_FIELD_EVENT, ENTRY_FIELD_USER } from "../src/types.js";
import { deleteKeysWithPrefix } from "../src/redis/delete-prefix.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const AUDIENCE = "order_completed_last_30_days";
const LOAD_FIELDS_PER_HSET = 1_000;
const LOAD_HSETS_PER_PIPELINE = 50;
const SYNC_TIME = Date.parse("2025-03-11T15:00:00.000Z");

interface Scenario {
  members: number;
  changes: number;
}

const SCENARIOS: Scenario[] = [
  { members: 100_000, changes: 10_000 },
  { members: 1_000_000, changes: 10_000 },
  { members: 1_000_000, changes: 1_000 },
];

interface RoundTripCounter {
  roundTrips: number;
  commands: number;
}

/**
 * Counts what a connection sends: every command, and round trips (a command sent on
 * its own, or one pipeline however many commands it contains).
 */
function countRoundTrips(redis: Redis): RoundTripCounter {
  const counter: RoundTripCounter = { roundTrips: 0, commands: 0 };

  const sendCommand = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: Parameters<Redis["sendCommand"]>[0], stream?: unknown) => {
    counter.commands += 1;
    // ioredis passes a stream only for commands queued in a pipeline, which are counted at exec().
    if (stream === undefined) counter.roundTrips += 1;
    return sendCommand(command, stream as Parameters<Redis["sendCommand"]>[1]);
  }) as Redis["sendCommand"];

  const pipeline = redis.pipeline.bind(redis);
  redis.pipeline = ((commands?: unknown[][]) => {
    const created = pipeline(commands);
    const exec = created.exec.bind(created);
    created.exec = ((callback?: Parameters<typeof exec>[0]) => {
      counter.roundTrips += 1;
      return exec(callback);
    }) as typeof exec;
    return created;
  }) as Redis["pipeline"];

  return counter;
}

/** A HydraClient that accepts every event and keeps the userIds and values it received. */
class AcceptingHydraClient implements HydraClient {
  requests = 0;
  readonly received = new Map<string, unknown>();

  async sendBatch(request: BatchRequest): Promise<EventResult[]> {
    this.requests += 1;
    for (const json of request.events) {
      const event = JSON.parse(json) as { userId: string; traits: Record<string, unknown> };
      this.received.set(event.userId, event.traits[AUDIENCE]);
    }
    return request.events.map(() => ({ status: 200, retryable: false }));
  }

  async close(): Promise<void> {}
}

function benchConfig(prefix: string): Config {
  return loadConfig({
    REDIS_URL,
    REDIS_PREFIX: prefix,
    LOG_LEVEL: "silent",
    SEGMENT_WRITE_KEY: "bench-write-key",
    HYDRA_API_KEY: "bench-hydra-key",
    HYDRA_API_URL: "http://127.0.0.1:1",
  });
}

const personas = JSON.stringify({
  computation_class: "audience",
  computation_id: "aud_bench",
  computation_key: AUDIENCE,
  namespace: "spa_bench",
  space_id: "spa_bench",
});

/**
 * Writes N members as the state after a completed initial sync (every member in
 * `current`, none pending), or, with `synced` false, as the state before the initial
 * sync (every member pending). Uses pipelined HSET batches.
 */
async function loadAudience(redis: Redis, keys: EngageKeys, members: number, synced = true): Promise<void> {
  const timestamp = SYNC_TIME - 86_400_000;
  let pipeline = redis.pipeline();
  let queued = 0;

  for (let start = 0; start < members; start += LOAD_FIELDS_PER_HSET) {
    const fields: string[] = [];
    for (let i = start; i < Math.min(members, start + LOAD_FIELDS_PER_HSET); i++) {
      fields.push(`u:user-${i}`, `${timestamp}\tuser-${i}@example.com\ttrue`);
    }
    pipeline.hset(keys.current(AUDIENCE), ...fields);
    if (!synced) pipeline.hset(keys.pending(AUDIENCE), ...fields.map((field, index) => (index % 2 === 0 ? field : "")));
    queued += 1;
    if (queued === LOAD_HSETS_PER_PIPELINE) {
      await pipeline.exec();
      pipeline = redis.pipeline();
      queued = 0;
    }
  }
  await pipeline.exec();

  await redis.hset(keys.meta(AUDIENCE), "firstSeenAt", timestamp, "membership", "1", "personas", personas, "members", members);
  await redis.sadd(keys.audiences(), AUDIENCE);
  if (synced) {
    await redis.hset(keys.meta(AUDIENCE), "lastSyncNumber", 1);
    await redis.hset(keys.syncProgress(AUDIENCE), "number", 1, "state", "completed");
  }
}

/**
 * Appends `changes` Engage identifies to the stream: the first half of the changed users
 * leave (existing members), the second half enter (new users), plus one unchanged
 * re-send for every tenth change, which must not count.
 */
async function appendChanges(redis: Redis, keys: EngageKeys, members: number, changes: number): Promise<Map<string, boolean>> {
  const expected = new Map<string, boolean>();
  const leaves = Math.floor(changes / 2);
  const timestamp = new Date(SYNC_TIME - 3_600_000).toISOString();
  const event = (userId: string, value: boolean) =>
    JSON.stringify({
      type: "identify",
      userId,
      messageId: `personas_${userId}_${value}`,
      traits: { [AUDIENCE]: value, email: `${userId}@example.com` },
      context: { personas: JSON.parse(personas) },
      timestamp,
      receivedAt: timestamp,
      sentAt: null,
    });

  let pipeline = redis.pipeline();
  const add = (userId: string, value: boolean) => pipeline.xadd(keys.stream, "*", ENTRY_FIELD_USER, userId, ENTRY_FIELD_EVENT, event(userId, value));

  for (let i = 0; i < changes; i++) {
    const leaving = i < leaves;
    // Leaving users are spread over the whole audience, not the first ones loaded.
    const userId = leaving ? `user-${Math.floor((i * members) / leaves)}` : `user-${members + i}`;
    add(userId, !leaving);
    expected.set(userId, !leaving);
    if (i % 10 === 0) add(userId, !leaving);
    if (i % 1_000 === 999) {
      await pipeline.exec();
      pipeline = redis.pipeline();
    }
  }
  await pipeline.exec();
  return expected;
}

async function memoryOf(redis: Redis, keys: string[]): Promise<number> {
  let total = 0;
  for (const key of keys) total += (await redis.memory("USAGE", key, "SAMPLES", 0)) ?? 0;
  return total;
}


interface Row {
  members: number;
  changes: number;
  loadMs: number;
  applyMs: number;
  syncMs: number;
  sent: number;
  requests: number;
  roundTrips: number;
  commands: number;
  bytesPerMember: number;
  bytesPerPendingChange: number;
}

async function runScenario(scenario: Scenario): Promise<Row> {
  const prefix = `hs-bench-engage-${randomUUID().slice(0, 8)}`;
  const config = benchConfig(prefix);
  const keys = new EngageKeys(new RedisKeys(prefix), "default");
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const syncRedis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const logger = createLogger("silent");
  const clock = { now: () => SYNC_TIME };

  try {
    let started = performance.now();
    await loadAudience(redis, keys, scenario.members);
    const loadMs = performance.now() - started;

    const consumer = new EngageConsumer({ redis, config, logger, clock });
    await consumer.ensureGroups();
    const expected = await appendChanges(redis, keys, scenario.members, scenario.changes);

    started = performance.now();
    while ((await consumer.consumeOnce()) > 0);
    const applyMs = performance.now() - started;

    const pendingBytes = await memoryOf(redis, [keys.pending(AUDIENCE)]);
    const pendingCount = await redis.hlen(keys.pending(AUDIENCE));
    if (pendingCount !== scenario.changes) throw new Error(`expected ${scenario.changes} pending changes, found ${pendingCount}`);

    const hydra = new AcceptingHydraClient();
    const counter = countRoundTrips(syncRedis);
    started = performance.now();
    const result = await runSync({ redis: syncRedis, config, logger, clock, hydraClient: hydra }, { source: "default", audience: AUDIENCE, syncNumber: 2, dueAt: SYNC_TIME, claimedAt: SYNC_TIME });
    const syncMs = performance.now() - started;

    if (result.sent !== scenario.changes || hydra.received.size !== scenario.changes) {
      throw new Error(`expected ${scenario.changes} events, the sync sent ${result.sent} to ${hydra.received.size} users`);
    }
    for (const [userId, value] of expected) {
      if (hydra.received.get(userId) !== value) throw new Error(`user ${userId} should have been sent ${value}, got ${String(hydra.received.get(userId))}`);
    }

    const members = Number(await redis.hget(keys.meta(AUDIENCE), "members"));
    const audienceBytes = await memoryOf(redis, keys.audienceKeys(AUDIENCE));

    return {
      ...scenario,
      loadMs,
      applyMs,
      syncMs,
      sent: result.sent,
      requests: hydra.requests,
      roundTrips: counter.roundTrips,
      commands: counter.commands,
      bytesPerMember: audienceBytes / members,
      bytesPerPendingChange: pendingBytes / pendingCount,
    };
  } finally {
    await deleteKeysWithPrefix(redis, prefix);
    await redis.quit();
    await syncRedis.quit();
  }
}

interface InitialRow {
  members: number;
  syncMs: number;
  sent: number;
  requests: number;
  roundTrips: number;
}

/** Runs the initial sync of an audience of N members, all pending. */
async function runInitialScenario(members: number): Promise<InitialRow> {
  const prefix = `hs-bench-engage-${randomUUID().slice(0, 8)}`;
  const config = benchConfig(prefix);
  const keys = new EngageKeys(new RedisKeys(prefix), "default");
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const syncRedis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const clock = { now: () => SYNC_TIME };

  try {
    await loadAudience(redis, keys, members, false);

    const hydra = new AcceptingHydraClient();
    const counter = countRoundTrips(syncRedis);
    const started = performance.now();
    const result = await runSync({ redis: syncRedis, config, logger: createLogger("silent"), clock, hydraClient: hydra }, { source: "default", audience: AUDIENCE, syncNumber: 1, dueAt: SYNC_TIME, claimedAt: SYNC_TIME });
    const syncMs = performance.now() - started;

    if (result.sent !== members || hydra.received.size !== members || (await redis.hlen(keys.pending(AUDIENCE))) !== 0) {
      throw new Error(`expected the initial sync to send ${members} events, it sent ${result.sent}`);
    }
    return { members, syncMs, sent: result.sent, requests: hydra.requests, roundTrips: counter.roundTrips };
  } finally {
    await deleteKeysWithPrefix(redis, prefix);
    await redis.quit();
    await syncRedis.quit();
  }
}

async function main(): Promise<void> {
  const probe = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const info = await probe.info("server");
  await probe.quit();
  const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";

  console.log(`Engage delta sync benchmark: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), Redis ${redisVersion} at ${REDIS_URL}`);
  console.log("");
  console.log("| members | changed | delta sync | events sent | requests | Redis round trips | Redis commands | apply changes | memory per member | memory per pending change |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

  for (const scenario of SCENARIOS) {
    const row = await runScenario(scenario);
    console.log(
      `| ${row.members.toLocaleString("en-US")} | ${row.changes.toLocaleString("en-US")} | ${row.syncMs.toFixed(0)} ms | ${row.sent.toLocaleString("en-US")} | ${row.requests} | ${row.roundTrips} | ${row.commands} | ${row.applyMs.toFixed(0)} ms | ${row.bytesPerMember.toFixed(1)} B | ${row.bytesPerPendingChange.toFixed(1)} B |`,
    );
  }

  console.log("");
  console.log("| initial sync of | time | events sent | requests | Redis round trips |");
  console.log("| ---: | ---: | ---: | ---: | ---: |");
  const initial = await runInitialScenario(1_000_000);
  console.log(`| ${initial.members.toLocaleString("en-US")} members | ${(initial.syncMs / 1_000).toFixed(1)} s | ${initial.sent.toLocaleString("en-US")} | ${initial.requests} | ${initial.roundTrips} |`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
