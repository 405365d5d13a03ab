import { afterEach, describe, expect, it } from "vitest";

import { batchJobId } from "../src/batching/router.js";
import { trimConsumedStream } from "../src/batching/stream-trim.js";
import { DELIVERY_GROUP } from "../src/redis/keys.js";
import { createDeliveryQueue, deliveryJobOptions } from "../src/worker/delivery-queue.js";
import { startPipeline, track, waitFor, type Pipeline } from "./support/pipeline.js";
import { deletePrefix, testRedis, uniquePrefix } from "./support/redis.js";

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

/** Reads every entry of a lane as a consumer that then "crashes": the entries stay pending. */
async function readAsCrashedConsumer(p: Pipeline, lane: string): Promise<[string, string[]][]> {
  const stream = p.keys.laneStream(lane);
  await p.redis.xgroup("CREATE", stream, DELIVERY_GROUP, "0", "MKSTREAM").catch(() => {});
  const reply = (await p.redis.xreadgroup("GROUP", DELIVERY_GROUP, "crashed-consumer", "COUNT", 1_000, "STREAMS", stream, ">")) as [string, [string, string[]][]][];
  return reply[0][1];
}

describe("when a router crashed", () => {
  it("claims its pending entries and delivers them once", async () => {
    pipeline = await startPipeline({ PARTITIONS: "1" }, { worker: false });
    await pipeline.send([track("user-1", 1), track("user-2", 1), track("user-1", 2)]);
    const entries = await readAsCrashedConsumer(pipeline, "default.p0");
    expect(entries).toHaveLength(3);

    await pipeline.startWorker();
    await pipeline.simulator.waitForEvents(3);
    await waitFor(async () => (await pipeline!.redis.xpending(pipeline!.keys.laneStream("default.p0"), DELIVERY_GROUP))[0] === 0, "no entry pending");

    expect(pipeline.simulator.state.stats().duplicates).toBe(0);
    expect(pipeline.simulator.state.stats().eventsAccepted).toBe(3);
  });

  it("makes no second job for entries already in one", async () => {
    pipeline = await startPipeline({ PARTITIONS: "1" }, { worker: false });
    await pipeline.send([track("user-1", 1), track("user-2", 1), track("user-1", 2), track("user-3", 1)]);
    const entries = await readAsCrashedConsumer(pipeline, "default.p0");

    // The crashed router had added a job for the first two entries but not acknowledged them.
    const queueConnection = testRedis();
    const queue = createDeliveryQueue(pipeline.config, queueConnection);
    const jobId = batchJobId("default.p0", entries[0][0]);
    const firstTwo = entries.slice(0, 2);
    await queue.add(
      "batch",
      {
        source: "default",
        lane: "default.p0",
        kind: "batch",
        entryIds: firstTwo.map(([id]) => id),
        users: firstTwo.map(([, fields]) => fields[1]),
        events: firstTwo.map(([, fields]) => fields[3]),
        count: 2,
        bytes: 1_000,
      },
      deliveryJobOptions(pipeline.config, jobId),
    );

    await pipeline.startWorker();
    await pipeline.simulator.waitForEvents(4);
    await waitFor(async () => (await pipeline!.redis.xpending(pipeline!.keys.laneStream("default.p0"), DELIVERY_GROUP))[0] === 0, "no entry pending");

    const idempotencyKeys = pipeline.simulator.state.batches().map((batch) => batch.idempotencyKey);
    expect(idempotencyKeys.filter((key) => key === jobId)).toHaveLength(1);
    expect(pipeline.simulator.state.stats().duplicates).toBe(0);
    expect(pipeline.simulator.state.stats().eventsAccepted).toBe(4);
    await queue.close();
    queueConnection.disconnect();
  });

  it("moves lanes of a stopped router to a live one", async () => {
    pipeline = await startPipeline({ PARTITIONS: "4" }, { worker: false });
    const first = await pipeline.startWorker();
    const second = await pipeline.startWorker();
    await waitFor(() => first.router.lanes.length === 2 && second.router.lanes.length === 2, "lanes shared evenly");

    await first.close();
    await waitFor(() => second.router.lanes.length === 4, "second router owns every lane", 10_000);

    const events = [];
    for (let i = 0; i < 20; i++) events.push(track(`user-${i}`, i));
    await pipeline.send(events);
    await pipeline.simulator.waitForEvents(20);
  });
});

describe("trimConsumedStream", () => {
  it("keeps entries still pending", async () => {
    const redis = testRedis();
    const prefix = uniquePrefix("trim");
    const stream = `${prefix}:{lane}:events`;
    try {
      for (let i = 0; i < 1_000; i++) await redis.xadd(stream, "*", "e", `event-${i}`);
      await redis.xgroup("CREATE", stream, DELIVERY_GROUP, "0");
      const read = (await redis.xreadgroup("GROUP", DELIVERY_GROUP, "c1", "COUNT", 1_000, "STREAMS", stream, ">")) as [string, [string, string[]][]][];
      const ids = read[0][1].map(([id]) => id);
      // Everything up to entry 600 was delivered; entry 600 and later are pending.
      await redis.xack(stream, DELIVERY_GROUP, ...ids.slice(0, 600));

      const removed = await trimConsumedStream(redis, stream, DELIVERY_GROUP, 60_000, Date.now() + 3_600_000);

      expect(removed).toBeGreaterThan(0);
      expect(removed).toBeLessThanOrEqual(600);
      const oldestPending = await redis.xrange(stream, ids[600], ids[600]);
      expect(oldestPending).toHaveLength(1);
      expect(await redis.xlen(stream)).toBeGreaterThanOrEqual(400);
    } finally {
      await deletePrefix(redis, prefix);
      redis.disconnect();
    }
  });

  it("keeps entries no consumer has read", async () => {
    const redis = testRedis();
    const prefix = uniquePrefix("trim");
    const stream = `${prefix}:{lane}:events`;
    try {
      await redis.xgroup("CREATE", stream, DELIVERY_GROUP, "0", "MKSTREAM");
      for (let i = 0; i < 1_000; i++) await redis.xadd(stream, "*", "e", `event-${i}`);

      const removed = await trimConsumedStream(redis, stream, DELIVERY_GROUP, 60_000, Date.now() + 3_600_000);

      expect(removed).toBe(0);
      expect(await redis.xlen(stream)).toBe(1_000);
    } finally {
      await deletePrefix(redis, prefix);
      redis.disconnect();
    }
  });
});
