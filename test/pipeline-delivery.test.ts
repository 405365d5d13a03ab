import { afterEach, describe, expect, it } from "vitest";

import { startPipeline, track, waitFor, type Pipeline } from "./support/pipeline.js";

let pipeline: Pipeline;

afterEach(async () => {
  await pipeline?.close();
});

function sequencesOf(pipeline: Pipeline, userId: string): number[] {
  return pipeline.simulator.state
    .events({ userId })
    .map((recorded) => (recorded.event.properties as { sequence: number }).sequence);
}

describe("when Hydra accepts every batch", () => {
  it("delivers every event in user order", async () => {
    pipeline = await startPipeline();
    const events = [];
    for (let i = 0; i < 60; i++) events.push(track(`user-${i % 3}`, i));

    const reply = await pipeline.send(events);
    expect(reply.status).toBe(200);

    await pipeline.simulator.waitForEvents(60);
    for (let user = 0; user < 3; user++) {
      const expected = events.filter((_, i) => i % 3 === user).map((event) => (event.properties as { sequence: number }).sequence);
      expect(sequencesOf(pipeline, `user-${user}`)).toEqual(expected);
    }
    await waitFor(async () => (await pipeline.stats()).delivered === 60, "60 events counted as delivered");
  });

  it("batches up to BATCH_MAX_EVENTS a request", async () => {
    pipeline = await startPipeline({ BATCH_MAX_EVENTS: "10", PARTITIONS: "1", BATCH_LINGER_MS: "200" });
    const events = [];
    for (let i = 0; i < 35; i++) events.push(track(`user-${i % 5}`, i));

    await pipeline.send(events);
    await pipeline.simulator.waitForEvents(35);

    const sizes = pipeline.simulator.state.batches().map((batch) => batch.eventCount);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(35);
    expect(Math.max(...sizes)).toBe(10);
    expect(sizes.length).toBeLessThanOrEqual(5);
  });

  it("sends the contract's headers and fields", async () => {
    pipeline = await startPipeline();
    await pipeline.send([track("user-h", 1, { properties: { feature: "alerts", eventFlag: " NEGATIVE " } })]);
    await pipeline.simulator.waitForEvents(1);

    const [batch] = pipeline.simulator.state.batches();
    expect(batch.contentType).toBe("application/json");
    expect(batch.userAgent).toMatch(/^hydra-sync\//);
    expect(batch.idempotencyKey).toMatch(/^default\.p\d+-\d+-\d+$/);
    const [recorded] = pipeline.simulator.state.events({ userId: "user-h" });
    expect(recorded.event.properties).toEqual({ feature: "alerts", eventFlag: "negative" });
    expect(recorded.event.writeKey).toBeUndefined();
    expect(typeof recorded.event.receivedAt).toBe("string");
  });
});

describe("when Hydra answers 207", () => {
  it("retries only the failed events and holds their user", async () => {
    pipeline = await startPipeline({ PARTITIONS: "1", BATCH_LINGER_MS: "50", HYDRA_BACKOFF_BASE: "1s", HYDRA_BACKOFF_MAX: "1s" });
    // First request: position 0 (user-a's first event) fails with 503, position 2 is rejected for good.
    pipeline.simulator.addFault({ count: 1, status: 207, reject: [{ index: 0, status: 503, error: "busy" }, { index: 2, status: 422, error: "bad trait" }] });

    await pipeline.send([track("user-a", 1), track("user-b", 1), track("user-c", 1), track("user-b", 2)]);
    await waitFor(() => pipeline.simulator.state.batches().length >= 1, "first batch sent");
    // user-a's next event goes in the lane's next batch and waits behind the retried one.
    await pipeline.send([track("user-a", 2), track("user-b", 3)]);

    await waitFor(() => sequencesOf(pipeline, "user-b").length === 3, "user-b's events delivered");
    await waitFor(() => sequencesOf(pipeline, "user-a").length === 2, "user-a's events delivered");

    expect(sequencesOf(pipeline, "user-a")).toEqual([1, 2]);
    expect(sequencesOf(pipeline, "user-b")).toEqual([1, 2, 3]);
    expect(sequencesOf(pipeline, "user-c")).toEqual([]);

    const failed = await pipeline.worker!.queue.getFailed();
    expect(failed).toHaveLength(1);
    expect(failed[0].data.kind).toBe("rejected");
    expect(failed[0].data.users).toEqual(["user-c"]);
    expect(failed[0].failedReason).toContain("bad trait");
    expect(await pipeline.redis.hlen(pipeline.keys.laneHeld("default.p0"))).toBe(0);
  });
});

describe("when Hydra fails the whole request", () => {
  it("retries a 503 with the same idempotency key", async () => {
    pipeline = await startPipeline();
    pipeline.simulator.addFault({ count: 4, status: 503 });

    await pipeline.send([track("user-r", 1)]);
    await pipeline.simulator.waitForEvents(1);

    const keys = pipeline.simulator.state.batches().map((batch) => batch.idempotencyKey);
    expect(keys.length).toBeGreaterThanOrEqual(5);
    expect(new Set(keys).size).toBe(1);
    expect((await pipeline.stats()).retries).toBeGreaterThanOrEqual(1);
  });

  it("dead-letters after the retry window", async () => {
    pipeline = await startPipeline({ HYDRA_RETRY_WINDOW: "1s" });
    pipeline.simulator.addFault({ count: 1_000, status: 500 });

    await pipeline.send([track("user-d", 1)]);
    await waitFor(async () => (await pipeline.worker!.queue.getFailedCount()) === 1, "job dead-lettered", 15_000);

    const [failed] = await pipeline.worker!.queue.getFailed();
    expect(failed.failedReason).toContain("retry window");
    expect(failed.data.deadLetter?.status).toBe(500);
    expect((await pipeline.stats()).dead_lettered).toBe(1);
  });

  it("dead-letters a 400 at once", async () => {
    pipeline = await startPipeline();
    pipeline.simulator.addFault({ count: 1, status: 400, body: '{"error":"malformed"}' });

    await pipeline.send([track("user-e", 1)]);
    await waitFor(async () => (await pipeline.worker!.queue.getFailedCount()) === 1, "job dead-lettered");

    const [failed] = await pipeline.worker!.queue.getFailed();
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toContain("malformed");
  });

  it("waits for Retry-After after a 429", async () => {
    pipeline = await startPipeline();
    pipeline.simulator.addFault({ count: 1, status: 429, retryAfter: "1" });

    const sentAt = Date.now();
    await pipeline.send([track("user-f", 1)]);
    await pipeline.simulator.waitForEvents(1);

    const batches = pipeline.simulator.state.batches();
    expect(batches.map((batch) => batch.status)).toEqual([429, 200]);
    expect(Date.parse(batches[1].receivedAt) - Date.parse(batches[0].receivedAt)).toBeGreaterThanOrEqual(950);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(950);
  });

  it("ends a key rate-limited forever within the window", async () => {
    pipeline = await startPipeline({ HYDRA_RETRY_WINDOW: "1500ms" });
    pipeline.simulator.addFault({ count: 1_000, status: 429, retryAfter: "1" });

    await pipeline.send([track("user-g", 1)]);
    await waitFor(async () => (await pipeline.worker!.queue.getFailedCount()) === 1, "job dead-lettered", 15_000);

    const [failed] = await pipeline.worker!.queue.getFailed();
    expect(failed.data.deadLetter?.code).toBe("rate_limited");
  });
});

describe("when Hydra refuses the API key", () => {
  it("pauses the key and loses nothing", async () => {
    pipeline = await startPipeline();
    pipeline.simulator.addFault({ count: 3, status: 401 });

    await pipeline.send([track("user-k", 1), track("user-k", 2)]);
    await waitFor(async () => (await pipeline.redis.exists(pipeline.keys.pausedSource("default"))) === 1, "source paused");
    await pipeline.simulator.waitForEvents(2, 15_000);

    expect(await pipeline.worker!.queue.getFailedCount()).toBe(0);
    expect(sequencesOf(pipeline, "user-k")).toEqual([1, 2]);
    await waitFor(async () => (await pipeline.redis.exists(pipeline.keys.pausedSource("default"))) === 0, "pause cleared");
  });
});
