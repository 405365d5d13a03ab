import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";

import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import packageJson from "../package.json" with { type: "json" };
import { DeliveryError } from "../src/errors/delivery-error.js";
import { buildBatchBody, createHydraClient, type HydraClientOptions } from "../src/hydra/client.js";
import { MAX_BODY_BYTES } from "../src/hydra/limits.js";
import { DEFAULT_RATE_LIMIT_DELAY_MS } from "../src/hydra/retry-after.js";
import type { HydraClient } from "../src/hydra/types.js";
import { startSimulator, type Simulator } from "../src/simulator/index.js";

const NOW = Date.parse("2025-03-11T10:00:00.000Z");
const API_KEY = "hydra-test-key-4f9c";
const KEY = "lane.p3-1741687200000-0";
const silent = pino({ level: "silent" });

/** Builds a track event whose values differ by n, so a result at the wrong index shows. */
function track(n: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    type: "track",
    messageId: `msg-${n}`,
    userId: `user-${n}`,
    event: `Event ${n}`,
    properties: { feature: `feature-${n}`, eventFlag: "positive" },
    timestamp: "2025-03-11T09:59:00.000Z",
    receivedAt: "2025-03-11T09:59:30.000Z",
    ...extra,
  });
}

/** Builds a single event whose batch body is exactly `bytes` long. */
function eventWithBodyBytes(bytes: number): string {
  const envelope = buildBatchBody([], NOW).length;
  const bare = track(0, { context: { padding: "" } });
  return track(0, { context: { padding: "p".repeat(bytes - envelope - bare.length) } });
}

function tracks(count: number, extra: Record<string, unknown> = {}): string[] {
  return Array.from({ length: count }, (_, n) => track(n, extra));
}

/** Runs a promise that must reject with a DeliveryError and returns the error. */
async function deliveryErrorOf(promise: Promise<unknown>): Promise<DeliveryError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(DeliveryError);
  return error as DeliveryError;
}

let simulator: Simulator;
let client: HydraClient | undefined;

function connect(options: Partial<HydraClientOptions> = {}): HydraClient {
  client = createHydraClient({ baseUrl: simulator.url, timeoutMs: 2_000, logger: silent, now: () => NOW, ...options });
  return client;
}

beforeEach(async () => {
  simulator = await startSimulator({ port: 0, logger: silent });
});

afterEach(async () => {
  await client?.close();
  client = undefined;
  await simulator.close();
});

describe("when Hydra answers 200", () => {
  it("returns 200 for every event", async () => {
    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(3) });

    expect(results).toEqual([
      { status: 200, retryable: false },
      { status: 200, retryable: false },
      { status: 200, retryable: false },
    ]);
    expect(simulator.state.stats().eventsAccepted).toBe(3);
  });

  it("sends the events unchanged", async () => {
    const events = tracks(2);
    await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events });

    const recorded = simulator.state.events().map((entry) => entry.event);
    expect(recorded).toEqual(events.map((text) => JSON.parse(text)));
  });

  it("sends the contract headers", async () => {
    await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    const [batch] = simulator.state.batches();
    expect(batch.userAgent).toBe(`hydra-sync/${packageJson.version}`);
    expect(batch.idempotencyKey).toBe(KEY);
    expect(batch.contentType).toBe("application/json");
    expect(batch.apiKeyHash).toBe(createHash("sha256").update(API_KEY).digest("hex").slice(0, 12));
    expect(batch.sentAt).toBe("2025-03-11T10:00:00.000Z");
  });

  it("sends a custom User-Agent", async () => {
    await connect({ userAgent: "hydra-sync-test/9" }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    expect(simulator.state.batches()[0].userAgent).toBe("hydra-sync-test/9");
  });

  it("sends nothing for an empty batch", async () => {
    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: [] });

    expect(results).toEqual([]);
    expect(simulator.state.stats().requests).toBe(0);
  });
});

describe("when Hydra answers 207", () => {
  it("maps results to batch positions", async () => {
    simulator.addFault({
      status: 207,
      reject: [
        { index: 1, status: 400, error: "invalid trait" },
        { index: 3, status: 503 },
      ],
    });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(5) });

    expect(results[0]).toEqual({ status: 200, retryable: false });
    expect(results[1]).toEqual({ status: 400, error: "invalid trait", retryable: false, code: "bad_request" });
    expect(results[2]).toEqual({ status: 200, retryable: false });
    expect(results[3]).toMatchObject({ status: 503, retryable: true, code: "transient" });
    expect(results[4]).toEqual({ status: 200, retryable: false });
    expect(simulator.state.events().map((entry) => entry.event.messageId)).toEqual(["msg-0", "msg-2", "msg-4"]);
  });

  it("reports invalid events per event", async () => {
    const events = [track(0), track(1, { properties: { feature: "f", eventFlag: "Positive" } }), track(2, { writeKey: "wk" })];

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events });

    expect(results[0]).toEqual({ status: 200, retryable: false });
    expect(results[1]).toMatchObject({ status: 400, retryable: false, code: "bad_request" });
    expect(results[1].error).toContain("properties.eventFlag");
    expect(results[2]).toMatchObject({ status: 400, retryable: false, code: "bad_request" });
    expect(results[2].error).toContain("writeKey");
  });

  it("sets retryAtMs on a per-event 429", async () => {
    simulator.addFault({ status: 207, retryAfter: "30", reject: [{ index: 0, status: 429, error: "slow down" }] });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) });

    expect(results[0]).toEqual({ status: 429, error: "slow down", retryable: true, code: "rate_limited", retryAtMs: NOW + 30_000 });
    expect(results[1]).toEqual({ status: 200, retryable: false });
  });

  it("treats a short results list as transient", async () => {
    simulator.addFault({ status: 207, body: '{"results":[{"status":200}]}' });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(3) }));

    expect(error.code).toBe("transient");
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(207);
    expect(error.message).toContain("1 results for 3 events");
    expect(simulator.state.stats().requests).toBe(1);
  });

  it("treats a non-JSON 207 as transient", async () => {
    simulator.addFault({ status: 207, body: "<html>oops</html>" });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("transient");
    expect(error.retryable).toBe(true);
  });
});

describe("when Hydra answers 400", () => {
  it("throws a dead-letter error with the body", async () => {
    simulator.addFault({ status: 400, body: '{"error":"batch is not an array"}' });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("bad_request");
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(400);
    expect(error.message).toContain('{"error":"batch is not an array"}');
    expect(simulator.state.stats().requests).toBe(1);
  });

  it("truncates a long body", async () => {
    simulator.addFault({ status: 400, body: "x".repeat(5_000) });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.message).toContain("x".repeat(1_024));
    expect(error.message).not.toContain("x".repeat(1_025));
    expect(error.message).toContain("truncated, 5000 characters");
  });
});

describe("when Hydra answers 401 or 403", () => {
  it.each([401, 403])("throws unauthorized for %i", async (status) => {
    simulator.addFault({ status });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("unauthorized");
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(status);
    expect(error.message).not.toContain(API_KEY);
    expect(simulator.state.stats().requests).toBe(1);
  });

  it("rejects a key Hydra does not know", async () => {
    await simulator.close();
    simulator = await startSimulator({ port: 0, logger: silent, apiKeys: ["the-only-key"] });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("unauthorized");
    expect(error.status).toBe(403);
  });

  it("leaves other keys unaffected", async () => {
    simulator.addFault({ apiKey: "key-a", count: 5, status: 401 });
    const hydra = connect();

    const other = await hydra.sendBatch({ apiKey: "key-b", idempotencyKey: "b-1", events: tracks(1) });
    const failing = await deliveryErrorOf(hydra.sendBatch({ apiKey: "key-a", idempotencyKey: "a-1", events: tracks(1) }));

    expect(other).toEqual([{ status: 200, retryable: false }]);
    expect(failing.status).toBe(401);
  });

  it("rejects a key unfit for a header", async () => {
    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: "key with\nnewline", idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("unauthorized");
    expect(error.status).toBeUndefined();
    expect(simulator.state.stats().requests).toBe(0);
  });
});

describe("when Hydra answers 413", () => {
  it("splits the batch into halves", async () => {
    simulator.addFault({ status: 413 });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) });

    expect(results.map((result) => result.status)).toEqual([200, 200, 200, 200]);
    const batches = simulator.state.batches();
    expect(batches.map((batch) => [batch.idempotencyKey, batch.status])).toEqual([
      [KEY, 413],
      [`${KEY}.1`, 200],
      [`${KEY}.2`, 200],
    ]);
    expect(batches[1].messageIds).toEqual(["msg-0", "msg-1"]);
    expect(batches[2].messageIds).toEqual(["msg-2", "msg-3"]);
  });

  it("splits again until the halves fit", async () => {
    simulator.addFault({ status: 413, count: 2 });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(5) });

    expect(results.map((result) => result.status)).toEqual([200, 200, 200, 200, 200]);
    expect(simulator.state.batches().map((batch) => batch.idempotencyKey)).toEqual([KEY, `${KEY}.1`, `${KEY}.1.1`, `${KEY}.1.2`, `${KEY}.2`]);
    expect(simulator.state.batches().map((batch) => batch.eventCount)).toEqual([5, 3, 2, 1, 2]);
  });

  it("rejects a single event for good", async () => {
    simulator.addFault({ status: 413 });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 413, retryable: false, code: "payload_too_large" });
    expect(results[0].error).toContain("413");
    expect(simulator.state.stats().requests).toBe(1);
  });

  it("returns per-half results when halves differ", async () => {
    simulator.addFault({ status: 413 });
    simulator.addFault({ status: 422, body: '{"error":"unknown field"}' });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) });

    expect(results[0]).toMatchObject({ status: 422, retryable: false, code: "permanent" });
    expect(results[0].error).toContain("unknown field");
    expect(results[1]).toMatchObject({ status: 422, retryable: false, code: "permanent" });
    expect(results[2]).toEqual({ status: 200, retryable: false });
    expect(results[3]).toEqual({ status: 200, retryable: false });
  });

  it("keeps Retry-After of a rate-limited half", async () => {
    simulator.addFault({ status: 413 });
    simulator.addFault({ latencyMs: 0 });
    simulator.addFault({ status: 429, retryAfter: "60" });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) });

    expect(results.slice(0, 2)).toEqual([
      { status: 200, retryable: false },
      { status: 200, retryable: false },
    ]);
    expect(results[2]).toMatchObject({ status: 429, retryable: true, code: "rate_limited", retryAtMs: NOW + 60_000 });
    expect(results[3]).toMatchObject({ status: 429, retryable: true, code: "rate_limited", retryAtMs: NOW + 60_000 });
  });

  it("stops after a retryable first half", async () => {
    simulator.addFault({ status: 413 });
    simulator.addFault({ status: 503, count: 3 });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) }));

    expect(error.code).toBe("transient");
    expect(error.status).toBe(503);
    expect(simulator.state.batches().map((batch) => batch.idempotencyKey)).toEqual([KEY, `${KEY}.1`, `${KEY}.1`, `${KEY}.1`]);
  });

  it("throws when both halves fail alike", async () => {
    simulator.addFault({ status: 413 });
    simulator.addFault({ status: 422, count: 2 });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) }));

    expect(error.code).toBe("permanent");
    expect(error.status).toBe(422);
    expect(simulator.state.batches().map((batch) => batch.idempotencyKey)).toEqual([KEY, `${KEY}.1`, `${KEY}.2`]);
  });
});

describe("when a batch is over Hydra's limits", () => {
  const padding = "p".repeat(200_000);

  it("splits before sending", async () => {
    const events = tracks(4, { context: { padding } });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events });

    expect(results.map((result) => result.status)).toEqual([200, 200, 200, 200]);
    expect(simulator.state.batches().map((batch) => batch.idempotencyKey)).toEqual([`${KEY}.1`, `${KEY}.2`]);
  });

  it("rejects an oversized event without sending", async () => {
    const events = [track(0), track(1, { context: { padding: "p".repeat(600_000) } }), track(2), track(3)];

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events });

    expect(results.map((result) => result.status)).toEqual([200, 413, 200, 200]);
    expect(results[1]).toMatchObject({ retryable: false, code: "payload_too_large" });
    expect(simulator.state.batches().map((batch) => batch.idempotencyKey)).toEqual([`${KEY}.1.1`, `${KEY}.2`]);
  });

  it("sends a body of exactly 512 KiB whole", async () => {
    const event = eventWithBodyBytes(MAX_BODY_BYTES);

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: [event] });

    expect(results).toEqual([{ status: 200, retryable: false }]);
    expect(simulator.state.batches()[0].bytes).toBe(MAX_BODY_BYTES);
  });

  it("rejects one byte over unsent", async () => {
    const event = eventWithBodyBytes(MAX_BODY_BYTES + 1);

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: [event] });

    expect(results[0]).toMatchObject({ status: 413, retryable: false, code: "payload_too_large" });
    expect(simulator.state.stats().requests).toBe(0);
  });

  it("splits more than 500 events", async () => {
    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(501) });

    expect(results).toHaveLength(501);
    expect(results.every((result) => result.status === 200)).toBe(true);
    expect(simulator.state.batches().map((batch) => [batch.idempotencyKey, batch.eventCount])).toEqual([
      [`${KEY}.1`, 251],
      [`${KEY}.2`, 250],
    ]);
  });
});

describe("when Hydra answers 429", () => {
  it("sets retryAtMs from seconds", async () => {
    simulator.addFault({ status: 429, retryAfter: "3600" });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("rate_limited");
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(429);
    expect(error.retryAtMs).toBe(NOW + 3_600_000);
    expect(simulator.state.stats().requests).toBe(1);
  });

  it("sets retryAtMs from a date", async () => {
    simulator.addFault({ status: 429, retryAfter: new Date(NOW + 3_600_000).toUTCString() });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.retryAtMs).toBe(NOW + 3_600_000);
  });

  it("defaults retryAtMs without the header", async () => {
    simulator.addFault({ status: 429 });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.retryAtMs).toBe(NOW + DEFAULT_RATE_LIMIT_DELAY_MS);
  });
});

describe("when Hydra answers 5xx", () => {
  it("retries quickly then succeeds", async () => {
    simulator.addFault({ status: 503, count: 2 });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) });

    expect(results.map((result) => result.status)).toEqual([200, 200]);
    const batches = simulator.state.batches();
    expect(batches.map((batch) => batch.status)).toEqual([503, 503, 200]);
    expect(batches.map((batch) => batch.idempotencyKey)).toEqual([KEY, KEY, KEY]);
    expect(new Set(batches.map((batch) => batch.userAgent)).size).toBe(1);
  });

  it("throws transient after quick retries", async () => {
    simulator.addFault({ status: 500, count: 3 });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("transient");
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(500);
    expect(simulator.state.stats().requests).toBe(3);
  });

  it("honours quickRetries", async () => {
    simulator.addFault({ status: 502, count: 5 });

    await deliveryErrorOf(connect({ quickRetries: 4 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(simulator.state.stats().requests).toBe(5);
  });

  it("treats 501 as permanent", async () => {
    simulator.addFault({ status: 501, body: '{"error":"batch API v1 is not implemented here"}' });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(2) }));

    expect(error.code).toBe("permanent");
    expect(error.retryable).toBe(false);
    expect(error.status).toBe(501);
    expect(error.message).toContain("batch API v1 is not implemented here");
    expect(simulator.state.stats().requests).toBe(1);
  });
});

describe("when Hydra answers another 4xx", () => {
  it.each([404, 409, 422])("treats %i as permanent", async (status) => {
    simulator.addFault({ status, body: `{"error":"status ${status}"}` });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("permanent");
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(`status ${status}`);
  });

  it.each([
    [408, "timeout"],
    [423, "transient"],
  ])("keeps %i for the worker's retry", async (status, code) => {
    simulator.addFault({ status });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe(code);
    expect(error.retryable).toBe(true);
    expect(error.status).toBe(status);
    expect(simulator.state.stats().requests).toBe(1);
  });
});

describe("when Hydra does not respond", () => {
  it("times out a slow response", async () => {
    simulator.addFault({ latencyMs: 5_000 });

    const error = await deliveryErrorOf(connect({ timeoutMs: 300, quickRetries: 0 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("timeout");
    expect(error.retryable).toBe(true);
    expect(error.status).toBeUndefined();
  });

  it("times out when no answer comes", async () => {
    simulator.addFault({ noAnswer: true });

    const error = await deliveryErrorOf(connect({ timeoutMs: 300, quickRetries: 0 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("timeout");
    expect(error.retryable).toBe(true);
  });

  it("retries a timeout within the attempt", async () => {
    simulator.addFault({ noAnswer: true });

    const results = await connect({ timeoutMs: 500, quickRetries: 1 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    expect(results).toEqual([{ status: 200, retryable: false }]);
    expect(simulator.state.batches().map((batch) => [batch.idempotencyKey, batch.status])).toEqual([
      [KEY, 0],
      [KEY, 200],
    ]);
  });

  it("turns a late first try into a duplicate", async () => {
    simulator.addFault({ latencyMs: 1_000 });
    const bothRecorded = new Promise<void>((resolve) => {
      simulator.on("batch", () => {
        if (simulator.state.stats().requests === 2) resolve();
      });
    });

    const results = await connect({ timeoutMs: 300, quickRetries: 1 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });
    await bothRecorded;

    expect(results).toEqual([{ status: 200, retryable: false }]);
    expect(simulator.state.stats()).toMatchObject({ eventsAccepted: 1, duplicates: 1 });
    expect(simulator.state.batches().map((batch) => [batch.idempotencyKey, batch.accepted, batch.duplicates])).toEqual([
      [KEY, 1, 0],
      [KEY, 0, 1],
    ]);
  });

  it("retries a reset connection", async () => {
    simulator.addFault({ resetConnection: true });

    const results = await connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    expect(results).toEqual([{ status: 200, retryable: false }]);
    expect(simulator.state.batches().map((batch) => batch.status)).toEqual([0, 200]);
  });

  it("throws connection after repeated resets", async () => {
    simulator.addFault({ resetConnection: true, count: 3 });

    const error = await deliveryErrorOf(connect().sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("connection");
    expect(error.retryable).toBe(true);
    expect(simulator.state.stats().requests).toBe(3);
  });

  it("reports a refused connection", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));

    const error = await deliveryErrorOf(
      connect({ baseUrl: `http://127.0.0.1:${port}`, quickRetries: 1 }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }),
    );

    expect(error.code).toBe("connection");
    expect(error.retryable).toBe(true);
    expect(error.message).toContain("ECONNREFUSED");
  });
});

describe("logging", () => {
  function capturingLogger(lines: string[]) {
    const stream = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    return pino({ level: "trace" }, stream);
  }

  it("never logs the API key", async () => {
    const lines: string[] = [];
    const hydra = connect({ logger: capturingLogger(lines) });
    simulator.addFault({ status: 503 });
    simulator.addFault({ status: 413 });
    simulator.addFault({ status: 401 });

    const error = await deliveryErrorOf(hydra.sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(4) }));

    expect(error.code).toBe("unauthorized");
    expect(lines.length).toBeGreaterThanOrEqual(2);
    const output = lines.join("");
    expect(output).not.toContain(API_KEY);
    expect(output).not.toContain("Bearer");
    expect(output.toLowerCase()).not.toContain("authorization");
  });

  it("logs quick retries with the key", async () => {
    const lines: string[] = [];
    simulator.addFault({ status: 503 });

    await connect({ logger: capturingLogger(lines) }).sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) });

    const retries = lines.map((line) => JSON.parse(line)).filter((entry) => entry.msg.startsWith("Hydra request failed"));
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ idempotencyKey: KEY, status: 503, code: "transient", attempt: 1, component: "hydra-client" });
  });
});

describe("after close", () => {
  it("rejects new batches", async () => {
    const hydra = connect();
    await hydra.close();

    const error = await deliveryErrorOf(hydra.sendBatch({ apiKey: API_KEY, idempotencyKey: KEY, events: tracks(1) }));

    expect(error.code).toBe("connection");
    expect(error.retryable).toBe(true);
    expect(simulator.state.stats().requests).toBe(0);
  });
});
