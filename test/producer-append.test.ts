import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { createLogger } from "../src/logging/logger.js";
import { EventAppender, emptyWrites, type RequestWrites } from "../src/producer/append.js";
import { EventWriteError } from "../src/producer/errors.js";
import { RedisKeys } from "../src/redis/keys.js";
import { STAT } from "../src/types.js";
import { readStream } from "./fixtures/producer-harness.js";
import { deletePrefix, testRedis, uniquePrefix } from "./support/redis.js";

const DAY_MS = 86_400_000;

let prefix: string;
let keys: RedisKeys;
let redis: Redis;
let writer: Redis;
let monitor: Awaited<ReturnType<Redis["monitor"]>> | undefined;

beforeEach(() => {
  prefix = uniquePrefix("append");
  keys = new RedisKeys(prefix);
  redis = testRedis();
  writer = redis.duplicate({ enableAutoPipelining: true });
});

afterEach(async () => {
  monitor?.disconnect();
  monitor = undefined;
  await deletePrefix(redis, prefix);
  await writer.quit();
  await redis.quit();
});

function appender(dedupeTtlMs = DAY_MS): EventAppender {
  return new EventAppender(writer, keys, dedupeTtlMs, DAY_MS, createLogger("silent"));
}

/** Builds the writes of one request: identify events of one user in one lane. */
function laneWrites(lane: string, messageIds: string[], user = "usr_1"): RequestWrites {
  const writes = emptyWrites();
  const entries: string[] = [];
  for (const messageId of messageIds) entries.push(user, JSON.stringify({ type: "identify", userId: user, messageId }));
  writes.appends.set(keys.laneStream(lane), { stream: keys.laneStream(lane), dedupePrefix: keys.dedupePrefix(lane), entries, messageIds });
  writes.counters.set(STAT.accepted, messageIds.length);
  return writes;
}

/** Records the script calls Redis receives for this test's keys, through MONITOR. */
async function watchScriptCalls(): Promise<string[][]> {
  const calls: string[][] = [];
  monitor = await redis.monitor();
  monitor.on("monitor", (_time: string, args: string[]) => {
    if ((args[0] === "evalsha" || args[0] === "eval") && args.some((arg) => arg.startsWith(prefix))) calls.push(args);
  });
  return calls;
}

async function waitForCount(read: () => Promise<number>, expected: number): Promise<void> {
  const deadline = Date.now() + 5_000;
  while ((await read()) < expected) {
    if (Date.now() > deadline) throw new Error(`expected ${expected}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("write coalescing", () => {
  it("sends one script call per stream", async () => {
    const calls = await watchScriptCalls();
    const store = appender();

    const results = await Promise.all([store.write(laneWrites("default.p1", ["a1", "a2"]), "default"), store.write(laneWrites("default.p1", ["b1"]), "default")]);

    expect(results).toEqual([{ duplicates: 0 }, { duplicates: 0 }]);
    const entries = await readStream(redis, keys.laneStream("default.p1"));
    expect(entries.map((entry) => JSON.parse(entry.fields.e).messageId)).toEqual(["a1", "a2", "b1"]);
    expect(await redis.hget(keys.stats(), STAT.accepted)).toBe("3");

    await waitForCount(async () => calls.length, 1);
    expect(calls).toHaveLength(1);
  });

  it("caps the events of one call", async () => {
    const calls = await watchScriptCalls();
    const store = appender();
    const ids = (label: string) => Array.from({ length: 600 }, (_, i) => `${label}${i}`);

    await Promise.all(["a", "b", "c"].map((label) => store.write(laneWrites("default.p2", ids(label)), "default")));

    expect(await redis.xlen(keys.laneStream("default.p2"))).toBe(1_800);
    await waitForCount(async () => calls.length, 3);
    expect(calls).toHaveLength(3);
  });

  it("counts duplicates per request", async () => {
    const store = appender();
    const [first, second] = await Promise.all([
      store.write(laneWrites("default.p3", ["same", "own"]), "default"),
      store.write(laneWrites("default.p3", ["same", "other"]), "default"),
    ]);

    expect(first).toEqual({ duplicates: 0 });
    expect(second).toEqual({ duplicates: 1 });
    expect(await redis.xlen(keys.laneStream("default.p3"))).toBe(3);
    expect(await redis.hget(keys.stats(), STAT.duplicate)).toBe("1");
  });

  it("fails only the requests of a broken stream", async () => {
    await redis.set(keys.laneStream("default.p4"), "not a stream");
    const store = appender();

    const [broken, healthy] = await Promise.allSettled([
      store.write(laneWrites("default.p4", ["x1"]), "default"),
      store.write(laneWrites("default.p5", ["y1"]), "default"),
    ]);

    expect(broken.status).toBe("rejected");
    expect((broken as PromiseRejectedResult).reason).toBeInstanceOf(EventWriteError);
    expect((broken as PromiseRejectedResult).reason.retryable).toBe(true);
    expect(healthy).toEqual({ status: "fulfilled", value: { duplicates: 0 } });
    expect(await redis.exists(`${keys.dedupePrefix("default.p4")}x1`)).toBe(0);
  });

  it("skips dedupe keys with TTL 0", async () => {
    const store = appender(0);
    await store.write(laneWrites("default.p6", ["z", "z"]), "default");

    expect(await redis.xlen(keys.laneStream("default.p6"))).toBe(2);
    expect(await redis.exists(`${keys.dedupePrefix("default.p6")}z`)).toBe(0);
  });
});
