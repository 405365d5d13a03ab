import { afterEach, describe, expect, it } from "vitest";

import { partitionOf } from "../src/batching/partition.js";
import { signWebhookBody } from "../src/producer/index.js";
import { STAT } from "../src/types.js";
import {
  basicAuth,
  exampleLine,
  post,
  readLanes,
  readStream,
  RecordingMetrics,
  SOURCES_FILE,
  startTestProducer,
  type TestProducer,
} from "./fixtures/producer-harness.js";

const SECRET = "test-webhook-secret";

const running: TestProducer[] = [];

afterEach(async () => {
  for (const test of running.splice(0)) await test.stop();
});

async function start(overrides: Record<string, string> = {}, metrics?: RecordingMetrics): Promise<TestProducer> {
  const test = await startTestProducer(overrides, { metrics });
  running.push(test);
  return test;
}

function identify(messageId: string, userId = "usr_dedupe"): Record<string, unknown> {
  return { userId, messageId, traits: { plan: "business" } };
}

describe("deduplication", () => {
  it("stores a repeated messageId once", async () => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const first = await post(t.url("/v1/identify"), identify("dup-1"));
    const second = await post(t.url("/v1/identify"), identify("dup-1"));

    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.body).toEqual({ success: true });
    expect(await readLanes(t)).toHaveLength(1);
    expect(await t.redis.hget(t.keys.stats(), STAT.duplicate)).toBe("1");
    expect(metrics.total("duplicate")).toBe(1);
  });

  it("skips repeats inside one batch", async () => {
    const t = await start();
    const response = await post(t.url("/v1/batch"), {
      batch: [
        { type: "identify", ...identify("same") },
        { type: "identify", ...identify("same") },
        { type: "identify", ...identify("other") },
      ],
    });

    expect(response.status).toBe(200);
    expect((await readLanes(t)).map((entry) => entry.event.messageId)).toEqual(["same", "other"]);
    expect(await t.redis.hget(t.keys.stats(), STAT.duplicate)).toBe("1");
  });

  it("sets the dedupe key with the window TTL", async () => {
    const t = await start({ DEDUPE_WINDOW: "2h" });
    await post(t.url("/v1/identify"), identify("ttl-1"));

    const lane = t.keys.laneId("default", partitionOf("usr_dedupe", t.config.partitions));
    const ttl = await t.redis.pttl(`${t.keys.dedupePrefix(lane)}ttl-1`);
    expect(ttl).toBeGreaterThan(2 * 3_600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(2 * 3_600_000);
  });

  it("stores again after the window", async () => {
    const t = await start({ DEDUPE_WINDOW: "200ms" });
    await post(t.url("/v1/identify"), identify("short"));
    const lane = t.keys.laneId("default", partitionOf("usr_dedupe", t.config.partitions));
    const key = `${t.keys.dedupePrefix(lane)}short`;

    const deadline = Date.now() + 5_000;
    while ((await t.redis.exists(key)) === 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await post(t.url("/v1/identify"), identify("short"));

    expect(await readLanes(t)).toHaveLength(2);
  });

  it("stores every copy with window 0", async () => {
    const t = await start({ DEDUPE_WINDOW: "0" });
    await post(t.url("/v1/identify"), identify("off"));
    await post(t.url("/v1/identify"), identify("off"));

    expect(await readLanes(t)).toHaveLength(2);
    const lane = t.keys.laneId("default", partitionOf("usr_dedupe", t.config.partitions));
    expect(await t.redis.exists(`${t.keys.dedupePrefix(lane)}off`)).toBe(0);
  });

  it("does not dedupe across prefixes", async () => {
    const a = await start();
    const b = await start();
    await post(a.url("/v1/identify"), identify("shared"));
    await post(b.url("/v1/identify"), identify("shared"));

    expect(await readLanes(a)).toHaveLength(1);
    expect(await readLanes(b)).toHaveLength(1);
  });

  it("dedupes Engage identifies", async () => {
    const t = await start();
    const audience = exampleLine(73);
    await post(t.url("/v1/identify"), audience);
    await post(t.url("/v1/identify"), audience);

    expect(await readStream(t.redis, t.keys.engageStream("default"))).toHaveLength(1);
    expect(await t.redis.exists(`${t.keys.dedupePrefix(t.keys.engageTag("default"))}${audience.messageId}`)).toBe(1);
    expect(await t.redis.hget(t.keys.stats(), STAT.engageHeld)).toBe("1");
    expect(await t.redis.hget(t.keys.stats(), STAT.duplicate)).toBe("1");
  });
});

describe("Redis failures", () => {
  it("answers 503 when XADD fails", async () => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const lane = t.keys.laneId("default", partitionOf("usr_dedupe", t.config.partitions));
    await t.redis.set(t.keys.laneStream(lane), "not a stream");

    const failed = await post(t.url("/v1/identify"), identify("retry-me"));
    expect(failed.status).toBe(503);
    expect(failed.body.error.code).toBe("redis_unavailable");
    expect(await t.redis.exists(`${t.keys.dedupePrefix(lane)}retry-me`)).toBe(0);
    expect(metrics.total("accepted")).toBe(0);

    await t.redis.del(t.keys.laneStream(lane));
    const retried = await post(t.url("/v1/identify"), identify("retry-me"));
    expect(retried.status).toBe(200);
    expect((await readLanes(t)).map((entry) => entry.event.messageId)).toEqual(["retry-me"]);
  });

  it("answers 503 when another lane fails", async () => {
    const t = await start({ PARTITIONS: "64" });
    const users = ["usr_a", "usr_b"];
    expect(partitionOf(users[0], 64)).not.toBe(partitionOf(users[1], 64));
    const broken = t.keys.laneId("default", partitionOf(users[1], 64));
    await t.redis.set(t.keys.laneStream(broken), "not a stream");

    const response = await post(t.url("/v1/batch"), {
      batch: users.map((userId, i) => ({ type: "identify", ...identify(`m${i}`, userId) })),
    });

    expect(response.status).toBe(503);
  });
});

describe("webhook signatures", () => {
  function webhookPost(t: TestProducer, body: string, headers: Record<string, string>) {
    return post(t.url("/v1/webhook"), body, { authorization: "", ...headers });
  }

  it("accepts a correctly signed event", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const body = JSON.stringify({ type: "track", userId: "usr_w", event: "Signed In", messageId: "wh-1", sentAt: "2025-03-11T10:00:00.000Z", timestamp: "2025-03-11T09:00:00.000Z" });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.messageId).toBe("wh-1");
    expect(stored.event.timestamp).toBe("2025-03-11T09:00:00.000Z");
    expect("sentAt" in stored.event).toBe(false);
  });

  it("accepts a signed array of events", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const body = JSON.stringify([
      { type: "identify", userId: "usr_w1", messageId: "wh-a" },
      { type: "track", userId: "usr_w2", messageId: "wh-b" },
      { type: "page", userId: "usr_w3", messageId: "wh-c" },
    ]);
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(200);
    expect(response.body.rejected).toEqual([expect.objectContaining({ index: 1, reason: "missing_event" })]);
    expect((await readLanes(t)).map((entry) => entry.event.messageId)).toEqual(["wh-a"]);
  });

  it("rejects a missing signature", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const response = await webhookPost(t, JSON.stringify(identify("wh-missing")), {});

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe("invalid_signature");
    expect(await readLanes(t)).toHaveLength(0);
  });

  it("rejects a wrong signature", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const body = JSON.stringify({ type: "identify", ...identify("wh-wrong") });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, "another-secret") });

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe("invalid_signature");
    expect(await readLanes(t)).toHaveLength(0);
  });

  it("rejects a signature of another body", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const body = JSON.stringify({ type: "identify", ...identify("wh-tampered") });
    const response = await webhookPost(t, body.replace("usr_dedupe", "usr_other"), { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(401);
  });

  it("answers 501 without WEBHOOK_SECRET", async () => {
    const t = await start();
    const body = JSON.stringify({ type: "identify", ...identify("wh-off") });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(501);
    expect(response.body.error.code).toBe("webhook_not_configured");
    expect(response.body.error.message).toContain("WEBHOOK_SECRET");
  });

  it("uses the Basic write key's source", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET, SOURCES_FILE });
    const body = JSON.stringify({ type: "identify", ...identify("wh-ios") });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET), authorization: basicAuth("ios-write-key") });

    expect(response.status).toBe(200);
    expect(await readLanes(t, "ios")).toHaveLength(1);
    expect(await readLanes(t, "web")).toHaveLength(0);
  });

  it("defaults to the first source", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET, SOURCES_FILE });
    const body = JSON.stringify({ type: "identify", ...identify("wh-web") });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(200);
    expect(await readLanes(t, "web")).toHaveLength(1);
  });

  it("rejects an invalid single webhook event", async () => {
    const t = await start({ WEBHOOK_SECRET: SECRET });
    const body = JSON.stringify({ type: "launch", userId: "u" });
    const response = await webhookPost(t, body, { "x-signature": signWebhookBody(body, SECRET) });

    expect(response.status).toBe(400);
    expect(response.body.error.field).toBe("type");
  });
});
