import { afterEach, describe, expect, it } from "vitest";

import { partitionOf } from "../src/batching/partition.js";
import { STAT } from "../src/types.js";
import {
  exampleBatch,
  exampleLine,
  post,
  readLanes,
  readStream,
  RecordingMetrics,
  startTestProducer,
  type TestProducer,
} from "./fixtures/producer-harness.js";

let test: TestProducer | undefined;

afterEach(async () => {
  await test?.stop();
  test = undefined;
});

async function start(overrides: Record<string, string> = {}, metrics?: RecordingMetrics): Promise<TestProducer> {
  test = await startTestProducer(overrides, { metrics });
  return test;
}

/** Posts events as one batch and returns the stored events by messageId. */
async function postBatch(t: TestProducer, body: Record<string, unknown>): Promise<Map<string, Record<string, any>>> {
  const response = await post(t.url("/v1/batch"), body);
  expect(response.status).toBe(200);
  return new Map((await readLanes(t)).map((entry) => [entry.event.messageId as string, entry.event]));
}

function ms(iso: string): number {
  return Date.parse(iso);
}

describe("stored entries", () => {
  it("stores exact fields in the partition lane", async () => {
    const t = await start();
    const before = Date.now();
    const response = await post(t.url("/v1/track"), {
      userId: "usr_87v65vt5gp",
      anonymousId: "anon-1",
      event: "Invoice Paid",
      messageId: "msg-exact",
      properties: { feature: "billing", amount: 912.5 },
      context: { ip: "192.0.2.40" },
      timestamp: "2025-03-11T18:02:11.400Z",
    });
    const after = Date.now();
    expect(response.status).toBe(200);

    const lane = t.keys.laneId("default", partitionOf("usr_87v65vt5gp", t.config.partitions));
    const entries = await readStream(t.redis, t.keys.laneStream(lane));
    expect(entries).toHaveLength(1);
    expect(Object.keys(entries[0].fields)).toEqual(["u", "e"]);
    expect(entries[0].fields.u).toBe("usr_87v65vt5gp");

    const event = JSON.parse(entries[0].fields.e);
    expect(ms(event.receivedAt)).toBeGreaterThanOrEqual(before);
    expect(ms(event.receivedAt)).toBeLessThanOrEqual(after);
    expect(event.receivedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(event).toEqual({
      userId: "usr_87v65vt5gp",
      anonymousId: "anon-1",
      event: "Invoice Paid",
      messageId: "msg-exact",
      properties: { feature: "billing", amount: 912.5, eventFlag: "neutral" },
      context: { ip: "192.0.2.40" },
      timestamp: "2025-03-11T18:02:11.400Z",
      type: "track",
      receivedAt: event.receivedAt,
    });
  });

  it("lands every user in its partitionOf lane", async () => {
    const t = await start({ PARTITIONS: "8" });
    const users = Array.from({ length: 40 }, (_, i) => `usr_${i}`);
    await post(t.url("/v1/batch"), { batch: users.map((userId) => ({ type: "identify", userId })) });

    const stored = await readLanes(t);
    expect(stored).toHaveLength(40);
    for (const entry of stored) {
      expect(entry.lane).toBe(`default.p${partitionOf(entry.user, 8)}`);
      expect(entry.user).toBe(entry.event.userId);
    }
    expect(new Set(stored.map((entry) => entry.lane)).size).toBeGreaterThan(1);
  });

  it("keys anonymous events by anonymousId", async () => {
    const t = await start();
    await post(t.url("/v1/track"), exampleLine(21));

    const [stored] = await readLanes(t);
    expect(stored.user).toBe(exampleLine(21).anonymousId);
    expect(stored.lane).toBe(`default.p${partitionOf(exampleLine(21).anonymousId, t.config.partitions)}`);
    expect(stored.event.userId).toBeUndefined();
  });

  it("turns a numeric userId into a string", async () => {
    const t = await start();
    await post(t.url("/v1/track"), exampleLine(1));

    const [stored] = await readLanes(t);
    expect(stored.event.userId).toBe("10482");
    expect(stored.user).toBe("10482");
    expect(stored.lane).toBe(`default.p${partitionOf("10482", t.config.partitions)}`);
  });

  it("keeps or generates the messageId", async () => {
    const t = await start();
    await post(t.url("/v1/batch"), { batch: [exampleLine(3), exampleLine(8)] });

    const stored = await readLanes(t);
    const withoutId = stored.find((entry) => entry.event.event === "Scheduled Report Delivered");
    const withId = stored.find((entry) => entry.event.event === "Signed In");
    expect(withoutId?.event.messageId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(withId?.event.messageId).toBe(exampleLine(8).messageId);
  });

  it("drops sentAt and keeps originalTimestamp", async () => {
    const t = await start();
    await post(t.url("/v1/track"), { ...exampleLine(8), originalTimestamp: "2025-03-11T07:34:26.513Z" });

    const [stored] = await readLanes(t);
    expect("sentAt" in stored.event).toBe(false);
    expect(stored.event.originalTimestamp).toBe("2025-03-11T07:34:26.513Z");
  });

  it("drops an empty userId next to anonymousId", async () => {
    const t = await start();
    await post(t.url("/v1/identify"), { userId: "", anonymousId: "anon-7" });

    const [stored] = await readLanes(t);
    expect("userId" in stored.event).toBe(false);
    expect(stored.event.anonymousId).toBe("anon-7");
  });
});

describe("clock skew correction", () => {
  it("corrects a phone two days ahead", async () => {
    const t = await start();
    const line = exampleLine(141);
    const stored = await postBatch(t, { batch: [line] });
    const event = stored.get(line.messageId)!;

    expect(ms(line.sentAt) - ms(line.timestamp)).toBe(11_370);
    expect(ms(event.timestamp)).toBe(ms(event.receivedAt) - 11_370);
    expect(event.timestamp.startsWith(event.receivedAt.slice(0, 10))).toBe(true);
  });

  it("moves a slow laptop clock to arrival", async () => {
    const t = await start();
    const lines = [136, 137, 138, 139].map(exampleLine);
    const stored = await postBatch(t, { batch: lines });

    for (const line of lines) {
      const event = stored.get(line.messageId)!;
      expect(ms(event.timestamp)).toBe(ms(event.receivedAt) - (ms(line.sentAt) - ms(line.timestamp)));
    }
  });

  it("keeps offline events hours before arrival", async () => {
    const t = await start();
    const lines = [27, 28].map(exampleLine);
    const stored = await postBatch(t, { batch: lines });

    for (const line of lines) {
      const event = stored.get(line.messageId)!;
      const delay = ms(line.sentAt) - ms(line.timestamp);
      expect(delay).toBeGreaterThan(2 * 3_600_000);
      expect(ms(event.timestamp)).toBe(ms(event.receivedAt) - delay);
    }
  });

  it("puts a backwards clock after arrival", async () => {
    const t = await start();
    const line = exampleLine(86);
    const stored = await postBatch(t, { batch: [line] });
    const event = stored.get(line.messageId)!;

    expect(ms(event.timestamp)).toBe(ms(event.receivedAt) + 3_500);
  });

  it("uses the batch sentAt without event sentAt", async () => {
    const t = await start();
    const body = exampleBatch("batch-02-ios-offline-clock-ahead.json");
    const stored = await postBatch(t, body);

    const delivered = body.batch.filter((event: any) => event.type !== "screen");
    expect(stored.size).toBe(delivered.length);
    for (const line of delivered) {
      const event = stored.get(line.messageId)!;
      expect(ms(event.timestamp)).toBe(ms(event.receivedAt) - (ms(body.sentAt) - ms(line.timestamp)));
    }
  });

  it("lets the event sentAt win", async () => {
    const t = await start();
    const stored = await postBatch(t, {
      sentAt: "2025-03-11T10:00:00.000Z",
      batch: [
        { type: "identify", userId: "a", messageId: "own", timestamp: "2025-03-11T09:59:00.000Z", sentAt: "2025-03-11T09:59:30.000Z" },
        { type: "identify", userId: "b", messageId: "batch", timestamp: "2025-03-11T09:59:00.000Z" },
        { type: "identify", userId: "c", messageId: "null", timestamp: "2025-03-11T09:59:00.000Z", sentAt: null },
      ],
    });

    const own = stored.get("own")!;
    const batch = stored.get("batch")!;
    const fallback = stored.get("null")!;
    expect(ms(own.timestamp)).toBe(ms(own.receivedAt) - 30_000);
    expect(ms(batch.timestamp)).toBe(ms(batch.receivedAt) - 60_000);
    expect(ms(fallback.timestamp)).toBe(ms(fallback.receivedAt) - 60_000);
  });

  it("prefers originalTimestamp in the formula", async () => {
    const t = await start();
    const stored = await postBatch(t, {
      batch: [
        {
          type: "identify",
          userId: "a",
          messageId: "orig",
          originalTimestamp: "2025-03-11T09:58:00.000Z",
          timestamp: "2025-03-11T09:59:00.000Z",
          sentAt: "2025-03-11T10:00:00.000Z",
        },
      ],
    });

    const event = stored.get("orig")!;
    expect(ms(event.timestamp)).toBe(ms(event.receivedAt) - 120_000);
    expect(event.originalTimestamp).toBe("2025-03-11T09:58:00.000Z");
  });

  it("uses receivedAt when sentAt has no timestamp", async () => {
    const t = await start();
    const stored = await postBatch(t, { sentAt: "2025-03-11T10:00:00.000Z", batch: [{ type: "identify", userId: "a", messageId: "none" }] });

    const event = stored.get("none")!;
    expect(event.timestamp).toBe(event.receivedAt);
  });
});

describe("timestamps without sentAt", () => {
  it.each([
    [3, "2025-03-11T07:00:00.000Z"],
    [56, "2025-03-11T09:45:12.000Z"],
    [120, undefined],
    [143, undefined],
    [75, undefined],
    [112, undefined],
  ])("converts line %i to UTC", async (line, expected) => {
    const t = await start();
    const sent = exampleLine(line);
    expect(sent.sentAt).toBeUndefined();
    await post(t.url(`/v1/${sent.type}`), sent);

    const [stored] = await readLanes(t);
    expect(stored.event.timestamp).toBe(expected ?? new Date(ms(sent.timestamp)).toISOString());
    expect(stored.event.timestamp.endsWith("Z")).toBe(true);
    expect(sent.timestamp.endsWith("Z")).toBe(false);
  });

  it("uses receivedAt without timestamp", async () => {
    const t = await start();
    await post(t.url("/v1/identify"), exampleLine(158));

    const [stored] = await readLanes(t);
    expect(stored.event.timestamp).toBe(stored.event.receivedAt);
  });

  it("sets its own receivedAt on Engage events", async () => {
    const t = await start();
    const line = exampleLine(43);
    await post(t.url("/v1/track"), line);

    const [stored] = await readLanes(t);
    expect(stored.event.receivedAt).not.toBe(line.receivedAt);
    expect(stored.event.timestamp).toBe("2025-03-11T09:05:00.066Z");
    expect(stored.event.originalTimestamp).toBe(line.originalTimestamp);
    expect("sentAt" in stored.event).toBe(false);
  });
});

describe("batch context and integrations", () => {
  it("merges batch keys under the event's", async () => {
    const t = await start();
    const body = exampleBatch("batch-03-http-api-billing-worker.json");
    const stored = await postBatch(t, body);

    const paid = stored.get("billing-dcfc157acd5b5d130ef9799a")!;
    expect(paid.context).toEqual(body.context);
    expect(paid.integrations).toEqual({ Mixpanel: false });

    const seats = stored.get("billing-1ca5d7963e3330252e5f81dd")!;
    expect(seats.integrations).toEqual({ Mixpanel: false, All: false, Hydra: true });
    expect(seats.properties.eventFlag).toBe("positive");

    const overdue = stored.get("billing-1383f7d6ae078916f5048d18")!;
    expect(overdue.properties.eventFlag).toBe("neutral");
    expect(ms(overdue.timestamp)).toBe(ms(overdue.receivedAt) - 2_250);
    expect(stored.has("billing-162f857c9a8614b732943b61")).toBe(false);
    expect(stored.size).toBe(4);
  });

  it("keeps the event's own context keys", async () => {
    const t = await start();
    const stored = await postBatch(t, {
      context: { ip: "192.0.2.1", library: { name: "batch-lib" }, locale: "en-US" },
      integrations: { Amplitude: false, Hydra: true },
      batch: [
        {
          type: "identify",
          userId: "u",
          messageId: "ctx",
          context: { library: { name: "event-lib" }, timezone: "UTC" },
          integrations: { Amplitude: true },
        },
      ],
    });

    const event = stored.get("ctx")!;
    expect(event.context).toEqual({ ip: "192.0.2.1", library: { name: "event-lib" }, locale: "en-US", timezone: "UTC" });
    expect(event.integrations).toEqual({ Amplitude: true, Hydra: true });
  });

  it("filters by the batch's integrations", async () => {
    const t = await start();
    const response = await post(t.url("/v1/batch"), {
      integrations: { All: false },
      batch: [
        { type: "identify", userId: "off", messageId: "off" },
        { type: "identify", userId: "on", messageId: "on", integrations: { Hydra: true } },
      ],
    });

    expect(response.status).toBe(200);
    const stored = await readLanes(t);
    expect(stored.map((entry) => entry.event.messageId)).toEqual(["on"]);
    expect(await t.redis.hget(t.keys.stats(), STAT.filtered("integration_disabled"))).toBe("1");
  });
});

describe("eventFlag normalization", () => {
  const table: [string, number[]][] = [
    ["positive", [5, 32, 36, 65, 69, 122, 55, 63, 86, 64, 79, 11]],
    ["negative", [12, 47, 106, 20, 112, 71, 85]],
    ["neutral", [25, 27, 54, 81, 91]],
    ["neutral", [37, 61, 75, 92, 141, 110, 9, 111]],
    ["neutral", [1, 113, 15, 139, 137, 143, 146, 150, 152]],
    ["neutral", [8, 17, 21, 43]],
  ];

  it("maps every example spelling", async () => {
    const t = await start();
    const lines = table.flatMap(([, numbers]) => numbers);
    const events = lines.map(exampleLine);
    for (const event of events) expect(event.type).toBe("track");

    const stored = await postBatch(t, { batch: events });
    expect(stored.size).toBe(lines.length);

    for (const [flag, numbers] of table) {
      for (const line of numbers) {
        const sent = exampleLine(line);
        const event = stored.get(sent.messageId)!;
        expect({ line, flag: event.properties.eventFlag }).toEqual({ line, flag });
        expect(event.properties.feature).toEqual(sent.properties?.feature);
      }
    }
  });

  it("creates properties when absent", async () => {
    const t = await start();
    await post(t.url("/v1/track"), { userId: "u", event: "Signed In" });

    const [stored] = await readLanes(t);
    expect(stored.event.properties).toEqual({ eventFlag: "neutral" });
  });

  it("leaves identify traits alone", async () => {
    const t = await start();
    await post(t.url("/v1/identify"), { userId: "u", traits: { eventFlag: "POSITIVE" } });

    const [stored] = await readLanes(t);
    expect(stored.event.traits).toEqual({ eventFlag: "POSITIVE" });
    expect(stored.event.properties).toBeUndefined();
  });
});

describe("filtering", () => {
  it.each(["page", "screen", "group", "alias"])("answers and drops %s calls", async (type) => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const response = await post(t.url(`/v1/${type}`), { userId: "u", previousId: "p", groupId: "g", name: "Home" });

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ success: true });
    expect(await readLanes(t)).toHaveLength(0);
    expect(await t.redis.hget(t.keys.stats(), STAT.filtered("type_not_supported"))).toBe("1");
    expect(metrics.total("filtered", "type_not_supported")).toBe(1);
  });

  it.each([
    [{ Hydra: false }, true],
    [{ hydra: false }, true],
    [{ All: false }, true],
    [{ All: false, Mixpanel: true }, true],
    [{ All: false, Hydra: true }, false],
    [{ All: false, hydra: true }, false],
    [{ All: false, Hydra: { region: "eu" } }, false],
    [{ All: true, Salesforce: false }, false],
    [{}, false],
  ])("integrations %j filtered: %s", async (integrations, filtered) => {
    const t = await start();
    const response = await post(t.url("/v1/identify"), { userId: "u", integrations });

    expect(response.status).toBe(200);
    expect(await readLanes(t)).toHaveLength(filtered ? 0 : 1);
    expect(await t.redis.hget(t.keys.stats(), STAT.filtered("integration_disabled"))).toBe(filtered ? "1" : null);
  });

  it("counts every example line", async () => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const events = Array.from({ length: 159 }, (_, i) => exampleLine(i + 1));
    const response = await post(t.url("/v1/batch"), { batch: events });

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ success: true });

    const stats = await t.redis.hgetall(t.keys.stats());
    expect(stats[STAT.filtered("type_not_supported")]).toBe("23");
    expect(stats[STAT.filtered("integration_disabled")]).toBe("4");
    expect(stats[STAT.engageHeld]).toBe("23");
    expect(stats[STAT.accepted]).toBe("132");
    expect(await readLanes(t)).toHaveLength(109);
    expect(await readStream(t.redis, t.keys.engageStream("default"))).toHaveLength(23);
    expect(metrics.total("accepted", "default")).toBe(132);
    expect(metrics.total("filtered")).toBe(27);
  });
});

describe("Engage identifies", () => {
  it("stores audience identifies in the Engage stream", async () => {
    const t = await start();
    const audience = exampleLine(40);
    const trait = exampleLine(94);
    const engageTrack = exampleLine(43);
    await post(t.url("/v1/batch"), { batch: [audience, trait, engageTrack] });

    const engage = await readStream(t.redis, t.keys.engageStream("default"));
    expect(engage.map((entry) => JSON.parse(entry.fields.e).messageId)).toEqual([audience.messageId, trait.messageId]);
    expect(engage[0].fields.u).toBe(audience.userId);
    expect(JSON.parse(engage[0].fields.e).context.personas).toEqual(audience.context.personas);

    const lanes = await readLanes(t);
    expect(lanes.map((entry) => entry.event.messageId)).toEqual([engageTrack.messageId]);
    expect(await t.redis.hget(t.keys.stats(), STAT.engageHeld)).toBe("2");
  });

  it.each(["journey_step", "computed_trait"])("holds %s identifies", async (computationClass) => {
    const t = await start();
    await post(t.url("/v1/identify"), { userId: "u", context: { personas: { computation_class: computationClass } } });

    expect(await readStream(t.redis, t.keys.engageStream("default"))).toHaveLength(1);
    expect(await readLanes(t)).toHaveLength(0);
  });

  it("delivers other personas classes", async () => {
    const t = await start();
    await post(t.url("/v1/identify"), { userId: "u", context: { personas: { computation_class: "profile" } } });

    expect(await readStream(t.redis, t.keys.engageStream("default"))).toHaveLength(0);
    expect(await readLanes(t)).toHaveLength(1);
  });
});

describe("batch partial acceptance", () => {
  it("stores valid events and lists rejected ones", async () => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const batch = [
      { type: "identify", userId: "u1", messageId: "ok-1" },
      "not an event",
      { type: "purchase", userId: "u2" },
      { type: "track", anonymousId: "", properties: {}, event: "Signed In", messageId: "no-user" },
      { type: "track", userId: "u3" },
      { type: "identify", userId: "u4", timestamp: "2025-13-01T00:00:00Z" },
      { type: "track", userId: "u5", event: "Signed In", properties: "none" },
      { type: "track", userId: 7, event: "Signed In", messageId: "ok-2" },
    ];
    const response = await post(t.url("/v1/batch"), { batch });

    expect(response.status).toBe(200);
    expect(response.body.success).toBe(true);
    expect(response.body.rejected).toEqual([
      { index: 1, reason: "not_an_object", message: "each event must be a JSON object" },
      { index: 2, reason: "unknown_type", field: "type", message: '"type" must be one of identify, track, page, screen, group, alias' },
      { index: 3, reason: "missing_user", field: "userId", message: 'events need a user: set "userId" or "anonymousId" to a non-empty string or a number' },
      { index: 4, reason: "missing_event", field: "event", message: 'track events need an event name: set "event" to a non-empty string' },
      { index: 5, reason: "invalid_timestamp", field: "timestamp", message: expect.stringContaining("ISO 8601") },
      { index: 6, reason: "invalid_field", field: "properties", message: '"properties" must be a JSON object' },
    ]);

    const stored = await readLanes(t);
    expect(stored.map((entry) => entry.event.messageId).sort()).toEqual(["ok-1", "ok-2"]);

    const rejected = await readStream(t.redis, t.keys.rejectedStream());
    expect(rejected).toHaveLength(6);
    expect(rejected[2].fields).toEqual({
      reason: "missing_user",
      field: "userId",
      message: 'events need a user: set "userId" or "anonymousId" to a non-empty string or a number',
      source: "default",
      event: JSON.stringify(batch[3]),
    });
    expect(rejected[0].fields.field).toBe("");
    expect(rejected[0].fields.event).toBe('"not an event"');

    const stats = await t.redis.hgetall(t.keys.stats());
    expect(stats[STAT.rejected("missing_user")]).toBe("1");
    expect(stats[STAT.rejected("unknown_type")]).toBe("1");
    expect(stats[STAT.rejected("invalid_timestamp")]).toBe("1");
    expect(stats[STAT.accepted]).toBe("2");
    expect(metrics.total("rejected")).toBe(6);
  });

  it("trims the rejected stream by age", async () => {
    const t = await start({ REJECTED_RETENTION: "1m" });
    const oldId = `${Date.now() - 10 * 60_000}-0`;
    for (let i = 0; i < 200; i++) await t.redis.xadd(t.keys.rejectedStream(), `${Date.now() - 10 * 60_000 + i}-0`, "reason", "old");
    expect(await t.redis.xlen(t.keys.rejectedStream())).toBe(200);

    await post(t.url("/v1/batch"), { batch: [{ type: "track", userId: "u" }] });

    const remaining = await readStream(t.redis, t.keys.rejectedStream());
    expect(remaining.some((entry) => entry.id === oldId)).toBe(false);
    expect(remaining.at(-1)?.fields.reason).toBe("missing_event");
  });
});
