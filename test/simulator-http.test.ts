import { gzipSync } from "node:zlib";

import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { RecordedBatch } from "../src/simulator/index.js";
import { startSimulator, type Simulator } from "../src/simulator/index.js";

const silent = pino({ level: "silent" });
const SENT_AT = "2025-03-11T10:00:00.000Z";

function track(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "track",
    messageId: `http-${n}`,
    userId: `user-${n}`,
    event: "Report Created",
    properties: { feature: "report_builder", eventFlag: "positive" },
    timestamp: "2025-03-11T09:59:00.000Z",
    receivedAt: "2025-03-11T09:59:30.000Z",
    ...extra,
  };
}

function identify(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "identify",
    messageId: `http-identify-${n}`,
    userId: `user-${n}`,
    traits: { email: `user-${n}@example.com` },
    timestamp: "2025-03-11T09:59:00.000Z",
    receivedAt: "2025-03-11T09:59:30.000Z",
    ...extra,
  };
}

let simulator: Simulator;

beforeEach(async () => {
  simulator = await startSimulator({ port: 0, logger: silent });
});

afterEach(async () => {
  await simulator.close();
});

interface PostOptions {
  apiKey?: string | null;
  headers?: Record<string, string>;
}

async function post(path: string, body: string | Buffer, options: PostOptions = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const headers: Record<string, string> = { "content-type": "application/json", ...options.headers };
  if (options.apiKey !== null) headers.authorization = `Bearer ${options.apiKey ?? "http-key"}`;

  const response = await fetch(`${simulator.url}${path}`, { method: "POST", headers, body: typeof body === "string" ? body : new Uint8Array(body) });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : undefined };
}

function postBatch(events: unknown[], options: PostOptions = {}) {
  return post("/v1/batch", JSON.stringify({ sentAt: SENT_AT, batch: events }), options);
}

async function getJson(path: string): Promise<any> {
  const response = await fetch(`${simulator.url}${path}`);
  expect(response.status).toBe(200);
  return response.json();
}

describe("POST /v1/batch", () => {
  describe("with valid events", () => {
    it("responds 200 with the count", async () => {
      const response = await postBatch([track(1), identify(2)]);

      expect(response.status).toBe(200);
      expect(response.json).toEqual({ accepted: 2 });
    });

    it("accepts a gzip body", async () => {
      const body = gzipSync(JSON.stringify({ sentAt: SENT_AT, batch: [track(1)] }));

      const response = await post("/v1/batch", body, { headers: { "content-encoding": "gzip" } });

      expect(response.status).toBe(200);
      expect(simulator.state.batches()[0]).toMatchObject({ contentEncoding: "gzip", eventCount: 1 });
    });

    it("accepts a duplicate as 200", async () => {
      await postBatch([track(1)]);
      const response = await postBatch([track(1)]);

      expect(response.status).toBe(200);
      expect(simulator.state.stats()).toMatchObject({ eventsAccepted: 1, duplicates: 1 });
    });

    it("dedupes within one batch", async () => {
      const response = await postBatch([track(1), track(1)]);

      expect(response.status).toBe(200);
      expect(simulator.state.batches()[0]).toMatchObject({ accepted: 1, duplicates: 1 });
    });

    it("emits a batch event", async () => {
      const seen: RecordedBatch[] = [];
      simulator.on("batch", (batch) => seen.push(batch));

      await postBatch([track(1)], { headers: { "idempotency-key": "emit-1" } });

      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ idempotencyKey: "emit-1", status: 200, accepted: 1 });
    });
  });

  describe("without a usable API key", () => {
    it("responds 401 without Authorization", async () => {
      const response = await postBatch([track(1)], { apiKey: null });

      expect(response.status).toBe(401);
      expect(response.json.error).toContain("Authorization");
    });

    it("responds 401 for an empty Bearer", async () => {
      const response = await postBatch([track(1)], { apiKey: null, headers: { authorization: "Bearer " } });

      expect(response.status).toBe(401);
    });

    it("responds 401 for Basic auth", async () => {
      const response = await postBatch([track(1)], { apiKey: null, headers: { authorization: "Basic aHlkcmE6" } });

      expect(response.status).toBe(401);
    });

    it("accepts nothing", async () => {
      await postBatch([track(1)], { apiKey: null });

      expect(simulator.state.stats()).toMatchObject({ requests: 1, eventsAccepted: 0, requestsByStatus: { "401": 1 } });
    });
  });

  describe("with an invalid request", () => {
    it.each([
      ["not JSON", "{nope", "not valid JSON"],
      ["an array body", "[]", "JSON object"],
      ["no batch", JSON.stringify({ sentAt: SENT_AT }), "batch is missing"],
      ["an empty batch", JSON.stringify({ sentAt: SENT_AT, batch: [] }), "holds 0 events"],
      ["501 events", JSON.stringify({ sentAt: SENT_AT, batch: Array.from({ length: 501 }, (_, n) => track(n)) }), "holds 501 events"],
      ["no sentAt", JSON.stringify({ batch: [track(1)] }), "sentAt"],
    ])("responds 400 for %s", async (_case, body, message) => {
      const response = await post("/v1/batch", body);

      expect(response.status).toBe(400);
      expect(response.json.error).toContain(message);
      expect(simulator.state.stats().eventsAccepted).toBe(0);
    });

    it("responds 413 over 524,288 bytes", async () => {
      const response = await postBatch([track(1, { context: { padding: "p".repeat(524_288) } })]);

      expect(response.status).toBe(413);
      expect(simulator.state.stats().eventsAccepted).toBe(0);
    });

    it("responds 413 for a large gzip body", async () => {
      const body = gzipSync(JSON.stringify({ sentAt: SENT_AT, batch: [track(1, { context: { padding: "p".repeat(600_000) } })] }));
      expect(body.length).toBeLessThan(10_000);

      const response = await post("/v1/batch", body, { headers: { "content-encoding": "gzip" } });

      expect(response.status).toBe(413);
      expect(response.json.error).toContain("decoded");
    });

    it("responds 400 for broken gzip", async () => {
      const response = await post("/v1/batch", Buffer.from("not gzip at all"), { headers: { "content-encoding": "gzip" } });

      expect(response.status).toBe(400);
    });

    it("responds 415 for brotli", async () => {
      const response = await post("/v1/batch", Buffer.from("x"), { headers: { "content-encoding": "br" } });

      expect(response.status).toBe(415);
    });

    it("responds 405 for GET", async () => {
      const response = await fetch(`${simulator.url}/v1/batch`);

      expect(response.status).toBe(405);
    });
  });

  describe("with an invalid event", () => {
    it.each([
      ["a page call", track(0, { type: "page" }), "type"],
      ["no messageId", track(0, { messageId: undefined }), "messageId"],
      ["a numeric userId", track(0, { userId: 10482 }), "userId must be a string"],
      ["no user ids", track(0, { userId: undefined }), "userId or anonymousId"],
      ["empty user ids", track(0, { userId: "", anonymousId: "" }), "userId or anonymousId"],
      ["an offset timestamp", track(0, { timestamp: "2025-03-11T05:59:00-04:00" }), "timestamp"],
      ["no receivedAt", track(0, { receivedAt: undefined }), "receivedAt"],
      ["a writeKey", track(0, { writeKey: "wk" }), "writeKey"],
      ["a string context", track(0, { context: "web" }), "context"],
      ["array traits", identify(0, { traits: ["a"] }), "traits"],
      ["an empty event name", track(0, { event: "" }), "event must be"],
      ["no properties", track(0, { properties: undefined }), "properties must be"],
      ["a capitalized eventFlag", track(0, { properties: { eventFlag: "Positive" } }), "eventFlag"],
      ["a missing eventFlag", track(0, { properties: { feature: "auth" } }), "eventFlag"],
      ["a numeric eventFlag", track(0, { properties: { eventFlag: 1 } }), "eventFlag"],
    ])("rejects %s in a 207", async (_case, event, message) => {
      const response = await postBatch([track(1), event]);

      expect(response.status).toBe(207);
      expect(response.json.results[0]).toEqual({ status: 200 });
      expect(response.json.results[1].status).toBe(400);
      expect(response.json.results[1].error).toContain(message);
      expect(simulator.state.stats()).toMatchObject({ eventsAccepted: 1, rejected: 1 });
    });

    it("accepts an identify without traits", async () => {
      const response = await postBatch([identify(0, { traits: undefined })]);

      expect(response.status).toBe(200);
    });

    it("accepts an anonymous event", async () => {
      const response = await postBatch([track(0, { userId: undefined, anonymousId: "anon-1" })]);

      expect(response.status).toBe(200);
    });
  });
});

describe("faults", () => {
  it("responds the status for count requests", async () => {
    const queued = await post("/_sim/faults", JSON.stringify({ count: 2, status: 503 }));
    expect(queued.status).toBe(201);

    const statuses = [];
    for (let n = 0; n < 3; n++) statuses.push((await postBatch([track(n)])).status);

    expect(statuses).toEqual([503, 503, 200]);
    expect(simulator.state.stats()).toMatchObject({ eventsAccepted: 1, faultsApplied: 2, requestsByStatus: { "503": 2, "200": 1 } });
  });

  it("sends Retry-After", async () => {
    await post("/_sim/faults", JSON.stringify({ status: 429, retryAfter: "2" }));

    const response = await postBatch([track(1)]);

    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("2");
  });

  it("responds chosen statuses in a 207", async () => {
    await post("/_sim/faults", JSON.stringify({ status: 207, reject: [{ index: 2, status: 400, error: "invalid trait" }, { index: 4, status: 503 }] }));

    const response = await postBatch([0, 1, 2, 3, 4].map((n) => track(n)));

    expect(response.status).toBe(207);
    expect(response.json.results).toEqual([
      { status: 200 },
      { status: 200 },
      { status: 400, error: "invalid trait" },
      { status: 200 },
      { status: 503, error: "Simulated 503 for this event." },
    ]);
    expect(simulator.state.events().map((entry) => entry.event.messageId)).toEqual(["http-0", "http-1", "http-3"]);
  });

  it("limits a fault to one API key", async () => {
    await post("/_sim/faults", JSON.stringify({ apiKey: "key-a", count: 5, status: 401 }));

    const other = await postBatch([track(1)], { apiKey: "key-b" });
    const limited = await postBatch([track(2)], { apiKey: "key-a" });

    expect(other.status).toBe(200);
    expect(limited.status).toBe(401);
    expect((await getJson("/_sim/faults")).faults[0]).toMatchObject({ remaining: 4, status: 401 });
  });

  it("hides the fault's API key", async () => {
    await post("/_sim/faults", JSON.stringify({ apiKey: "secret-key-a", status: 401 }));

    const listed = await getJson("/_sim/faults");

    expect(JSON.stringify(listed)).not.toContain("secret-key-a");
    expect(listed.faults[0].apiKeyHash).toMatch(/^[0-9a-f]{12}$/);
  });

  it("applies faults in order", async () => {
    await post("/_sim/faults", JSON.stringify([{ status: 500 }, { status: 413 }, { status: 429 }]));

    const statuses = [];
    for (let n = 0; n < 4; n++) statuses.push((await postBatch([track(n)])).status);

    expect(statuses).toEqual([500, 413, 429, 200]);
  });

  it("clears faults on DELETE", async () => {
    await post("/_sim/faults", JSON.stringify({ count: 3, status: 503 }));

    const response = await fetch(`${simulator.url}/_sim/faults`, { method: "DELETE" });

    expect(await response.json()).toEqual({ cleared: 1 });
    expect((await postBatch([track(1)])).status).toBe(200);
  });

  it.each([
    ["no effect", { count: 1 }],
    ["a zero count", { count: 0, status: 503 }],
    ["reject without 207", { status: 503, reject: [{ index: 0, status: 400 }] }],
    ["an unknown field", { status: 503, color: "red" }],
  ])("rejects a fault with %s", async (_case, fault) => {
    const response = await post("/_sim/faults", JSON.stringify([{ status: 500 }, fault]));

    expect(response.status).toBe(400);
    expect(response.json.error).toContain("Invalid fault");
    expect((await getJson("/_sim/faults")).faults).toEqual([]);
  });

  it("delays by latencyMs", async () => {
    simulator.addFault({ latencyMs: 150 });
    const started = performance.now();

    const response = await postBatch([track(1)]);

    expect(response.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(simulator.state.batches()[0].fault).toBe("latency 150 ms");
  });
});

describe("inspection", () => {
  it("filters events by type and userId", async () => {
    await postBatch([track(1), identify(1), track(2)]);

    const { events } = await getJson("/_sim/events?type=track&userId=user-1");

    expect(events.map((entry: { event: { messageId: string } }) => entry.event.messageId)).toEqual(["http-1"]);
  });

  it("lists recent batches with headers", async () => {
    await postBatch([track(1)], { headers: { "idempotency-key": "inspect-1", "user-agent": "hydra-sync/test" } });

    const { batches } = await getJson("/_sim/batches");

    expect(batches).toHaveLength(1);
    expect(batches[0]).toMatchObject({ id: 1, idempotencyKey: "inspect-1", userAgent: "hydra-sync/test", eventCount: 1, status: 200, sentAt: SENT_AT });
    expect(JSON.stringify(batches)).not.toContain("http-key");
  });

  it("responds 404 for an unknown person", async () => {
    const response = await fetch(`${simulator.url}/_sim/persons/nobody`);

    expect(response.status).toBe(404);
  });

  it("resets everything", async () => {
    await postBatch([track(1)]);
    simulator.addFault({ status: 503 });

    const response = await post("/_sim/reset", "");

    expect(response.status).toBe(200);
    expect(simulator.state.stats()).toMatchObject({ requests: 0, eventsAccepted: 0, persons: 0 });
    expect((await getJson("/_sim/faults")).faults).toEqual([]);
    expect((await postBatch([track(1)])).status).toBe(200);
    expect(simulator.state.stats().duplicates).toBe(0);
  });
});

describe("waitForEvents", () => {
  it("resolves once enough arrive", async () => {
    const waiting = simulator.waitForEvents(3);

    await postBatch([track(1), track(2)]);
    await postBatch([track(3)]);

    await expect(waiting).resolves.toBeUndefined();
  });

  it("ignores duplicates", async () => {
    await postBatch([track(1)]);
    const waiting = simulator.waitForEvents(2, 300);

    await postBatch([track(1)]);

    await expect(waiting).rejects.toThrow("waiting for 2 accepted events; 1 were accepted");
  });
});
