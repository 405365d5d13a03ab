import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { gzipSync } from "node:zlib";
import { Writable } from "node:stream";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";

import { createLogger } from "../src/logging/logger.js";
import { startProducer } from "../src/producer/index.js";
import { partitionOf } from "../src/batching/partition.js";
import { RedisKeys } from "../src/redis/keys.js";
import { STAT } from "../src/types.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import {
  basicAuth,
  post,
  readLanes,
  readStream,
  RecordingMetrics,
  SOURCES_FILE,
  startTestProducer,
  WRITE_KEY,
  type TestProducer,
} from "./fixtures/producer-harness.js";

const KIB = 1024;

let test: TestProducer | undefined;

afterEach(async () => {
  await test?.stop();
  test = undefined;
});

async function start(overrides: Record<string, string> = {}, metrics?: RecordingMetrics): Promise<TestProducer> {
  test = await startTestProducer(overrides, { metrics });
  return test;
}

function track(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { userId: "usr_1", event: "Report Created", messageId: `m-${Math.random()}`, properties: { feature: "reports" }, ...overrides };
}

/** Builds a track event whose JSON takes about `bytes` bytes. */
function trackOfSize(bytes: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base = track(overrides);
  const padding = bytes - JSON.stringify(base).length - 20;
  return { ...base, properties: { feature: "reports", note: "x".repeat(Math.max(0, padding)) } };
}

/** Sends a body in chunks without Content-Length (chunked transfer encoding) and returns status and body. */
function postChunked(url: string, chunks: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers: { authorization: basicAuth(WRITE_KEY), ...headers } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

async function storedCount(t: TestProducer, source = "default"): Promise<number> {
  return (await readLanes(t, source)).length;
}

describe("write key authentication", () => {
  it("rejects a missing write key", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track(), { authorization: "" });

    expect(response.status).toBe(401);
    expect(response.body.success).toBe(false);
    expect(response.body.error.code).toBe("unauthorized");
    expect(response.body.error.message).toMatch(/write key is missing/);
    expect(await storedCount(t)).toBe(0);
  });

  it("rejects an unknown write key", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track(), { authorization: basicAuth("not-a-key") });

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe("unauthorized");
    expect(response.body.error.message).toMatch(/not valid/);
  });

  it("rejects a non-Basic Authorization header", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track(), { authorization: `Bearer ${WRITE_KEY}` });

    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe("unauthorized");
  });

  it("accepts Basic credentials without colon", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track(), { authorization: basicAuth(WRITE_KEY, false) });

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ success: true });
    expect(await storedCount(t)).toBe(1);
  });

  it("accepts and removes a body writeKey", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track({ writeKey: WRITE_KEY }), { authorization: "" });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.writeKey).toBeUndefined();
    expect(stored.event.event).toBe("Report Created");
  });

  it("accepts a batch writeKey and strips every copy", async () => {
    const t = await start();
    const response = await post(
      t.url("/v1/batch"),
      { writeKey: WRITE_KEY, batch: [{ type: "track", ...track({ writeKey: WRITE_KEY }) }, { type: "identify", userId: "usr_2" }] },
      { authorization: "" },
    );

    expect(response.status).toBe(200);
    const stored = await readLanes(t);
    expect(stored).toHaveLength(2);
    for (const entry of stored) expect(JSON.stringify(entry.event)).not.toContain(WRITE_KEY);
  });

  it("prefers the header over the body key", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track({ writeKey: WRITE_KEY }), { authorization: basicAuth("wrong-key") });

    expect(response.status).toBe(401);
  });

  it("routes events to the write key's source", async () => {
    const t = await start({ SOURCES_FILE });
    const response = await post(t.url("/v1/track"), track(), { authorization: basicAuth("ios-write-key") });

    expect(response.status).toBe(200);
    expect(await storedCount(t, "ios")).toBe(1);
    expect(await storedCount(t, "web")).toBe(0);
    const [stored] = await readLanes(t, "ios");
    expect(JSON.stringify(stored.event)).not.toContain("ios-hydra-key");
  });
});

describe("size limits", () => {
  it("rejects a single event over 32 KiB", async () => {
    const metrics = new RecordingMetrics();
    const t = await start({}, metrics);
    const response = await post(t.url("/v1/track"), trackOfSize(32 * KIB + 100));

    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe("payload_too_large");
    expect(response.body.error.message).toMatch(/32 KiB/);
    expect(await storedCount(t)).toBe(0);
    expect(metrics.total("rejected", "payload_too_large")).toBe(1);
  });

  it("accepts a single event under 32 KiB", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), trackOfSize(32 * KIB - 300));

    expect(response.status).toBe(200);
    expect(await storedCount(t)).toBe(1);
  });

  it("rejects a batch over 500 KiB", async () => {
    const t = await start();
    const batch = Array.from({ length: 20 }, () => ({ type: "track", ...trackOfSize(26 * KIB) }));
    const response = await post(t.url("/v1/batch"), { batch });

    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe("payload_too_large");
    expect(response.body.error.message).toMatch(/500 KiB/);
    expect(await storedCount(t)).toBe(0);
  });

  it("stops reading a chunked body past the limit", async () => {
    const t = await start();
    const chunk = Buffer.alloc(64 * KIB, 0x20);
    const response = await postChunked(t.url("/v1/batch"), Array.from({ length: 12 }, () => chunk));

    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe("payload_too_large");
  });

  it("rejects a batch of 2,501 events", async () => {
    const t = await start();
    const batch = Array.from({ length: 2_501 }, (_, i) => ({ type: "identify", userId: `u${i}` }));
    const response = await post(t.url("/v1/batch"), { batch });

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("too_many_events");
    expect(response.body.error.field).toBe("batch");
    expect(response.body.error.message).toMatch(/2500/);
    expect(await storedCount(t)).toBe(0);
  });

  it("accepts a batch of 2,500 events", async () => {
    const t = await start();
    const batch = Array.from({ length: 2_500 }, (_, i) => ({ type: "identify", userId: `u${i}`, messageId: `m${i}` }));
    const response = await post(t.url("/v1/batch"), { batch });

    expect(response.status).toBe(200);
    expect(response.body).toEqual({ success: true });
    expect(await storedCount(t)).toBe(2_500);
    expect(await t.redis.hget(t.keys.stats(), STAT.accepted)).toBe("2500");
  });

  it("rejects one oversize event alone", async () => {
    const t = await start();
    const big = { type: "track", ...trackOfSize(40 * KIB, { messageId: "big" }) };
    const small = { type: "track", ...track({ messageId: "small" }) };
    const response = await post(t.url("/v1/batch"), { batch: [small, big] });

    expect(response.status).toBe(200);
    expect(response.body.rejected).toHaveLength(1);
    expect(response.body.rejected[0].index).toBe(1);
    expect(response.body.rejected[0].reason).toBe("event_too_large");
    expect(response.body.rejected[0].message).toMatch(/32 KiB/);

    const stored = await readLanes(t);
    expect(stored.map((entry) => entry.event.messageId)).toEqual(["small"]);

    const [rejected] = await readStream(t.redis, t.keys.rejectedStream());
    expect(rejected.fields.reason).toBe("event_too_large");
    expect(JSON.parse(rejected.fields.event)).toEqual(big);
  });

  it("rejects a gzip bomb", async () => {
    const t = await start();
    const bomb = gzipSync(Buffer.alloc(20 * 1024 * KIB, 0x20));
    expect(bomb.length).toBeLessThan(500 * KIB);

    const response = await post(t.url("/v1/batch"), bomb, { "content-encoding": "gzip" });

    expect(response.status).toBe(413);
    expect(response.body.error.code).toBe("payload_too_large");
  });
});

describe("request bodies", () => {
  it("accepts a gzip body", async () => {
    const t = await start();
    const body = gzipSync(JSON.stringify({ batch: [{ type: "track", ...track({ messageId: "gz-1" }) }] }));
    const response = await post(t.url("/v1/batch"), body, { "content-encoding": "gzip" });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.messageId).toBe("gz-1");
  });

  it("accepts a gzip single event", async () => {
    const t = await start();
    const response = await post(t.url("/v1/identify"), gzipSync(JSON.stringify({ userId: "usr_gz" })), { "content-encoding": "gzip" });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.userId).toBe("usr_gz");
  });

  it("rejects invalid gzip data", async () => {
    const t = await start();
    const response = await post(t.url("/v1/batch"), "not gzip at all", { "content-encoding": "gzip" });

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("invalid_gzip");
  });

  it("rejects an unsupported Content-Encoding", async () => {
    const t = await start();
    const response = await post(t.url("/v1/batch"), "{}", { "content-encoding": "br" });

    expect(response.status).toBe(415);
    expect(response.body.error.code).toBe("unsupported_encoding");
  });

  it("reads JSON sent as text/plain", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), JSON.stringify(track({ messageId: "plain" })), { "content-type": "text/plain" });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.messageId).toBe("plain");
  });

  it("rejects invalid JSON", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), '{"userId": "usr_1",');

    expect(response.status).toBe(400);
    expect(response.body.success).toBe(false);
    expect(response.body.error.code).toBe("invalid_json");
  });

  it("rejects an empty body", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), "");

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("invalid_json");
  });

  it("rejects a non-object event body", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), [track()]);

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("invalid_body");
    expect(response.body.error.message).toMatch(/JSON object/);
  });

  it("rejects a batch without a batch array", async () => {
    const t = await start();
    const missing = await post(t.url("/v1/batch"), { events: [] });
    const notArray = await post(t.url("/v1/batch"), { batch: { type: "track" } });

    expect(missing.status).toBe(400);
    expect(missing.body.error.field).toBe("batch");
    expect(notArray.status).toBe(400);
    expect(notArray.body.error.field).toBe("batch");
  });

  it("rejects invalid batch-level fields", async () => {
    const t = await start();
    const context = await post(t.url("/v1/batch"), { batch: [], context: "web" });
    const sentAt = await post(t.url("/v1/batch"), { batch: [], sentAt: "yesterday" });

    expect(context.status).toBe(400);
    expect(context.body.error.field).toBe("context");
    expect(sentAt.status).toBe(400);
    expect(sentAt.body.error.field).toBe("sentAt");
  });

  it("accepts /v1/import as batch", async () => {
    const t = await start();
    const response = await post(t.url("/v1/import"), { batch: [{ type: "identify", userId: "usr_import" }] });

    expect(response.status).toBe(200);
    expect(await storedCount(t)).toBe(1);
  });
});

describe("single-event validation", () => {
  it("rejects a track without event name", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), { userId: "usr_1", properties: {} });

    expect(response.status).toBe(400);
    expect(response.body).toEqual({
      success: false,
      error: { code: "invalid_event", field: "event", message: 'track events need an event name: set "event" to a non-empty string' },
    });
    expect(await storedCount(t)).toBe(0);
  });

  it("rejects an empty event name", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), { userId: "usr_1", event: "" });

    expect(response.status).toBe(400);
    expect(response.body.error.field).toBe("event");
  });

  it("rejects an event without user", async () => {
    const t = await start();
    const response = await post(t.url("/v1/identify"), { userId: "", anonymousId: null, traits: {} });

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("invalid_event");
    expect(response.body.error.field).toBe("userId");
  });

  it("rejects a user id of wrong type", async () => {
    const t = await start();
    const response = await post(t.url("/v1/identify"), { userId: { id: 1 } });

    expect(response.status).toBe(400);
    expect(response.body.error.field).toBe("userId");
  });

  it.each(["timestamp", "sentAt", "originalTimestamp"])("rejects an unparseable %s", async (field) => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track({ [field]: "11/03/2025 09:00" }));

    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe("invalid_event");
    expect(response.body.error.field).toBe(field);
    expect(response.body.error.message).toMatch(/ISO 8601/);
  });

  it("rejects a numeric timestamp", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track"), track({ timestamp: 1741683900000 }));

    expect(response.status).toBe(400);
    expect(response.body.error.field).toBe("timestamp");
  });

  it("keeps a rejected single event", async () => {
    const t = await start();
    const event = { userId: "usr_1", properties: { feature: "reports" }, writeKey: WRITE_KEY };
    await post(t.url("/v1/track"), event);

    const [rejected] = await readStream(t.redis, t.keys.rejectedStream());
    expect(rejected.fields.reason).toBe("missing_event");
    expect(rejected.fields.field).toBe("event");
    expect(rejected.fields.source).toBe("default");
    expect(JSON.parse(rejected.fields.event)).toEqual({ userId: "usr_1", properties: { feature: "reports" } });
    expect(await t.redis.hget(t.keys.stats(), STAT.rejected("missing_event"))).toBe("1");
  });

  it("uses the path type, not the body", async () => {
    const t = await start();
    const response = await post(t.url("/v1/identify"), { type: "track", userId: "usr_1" });

    expect(response.status).toBe(200);
    const [stored] = await readLanes(t);
    expect(stored.event.type).toBe("identify");
  });
});

describe("routing and methods", () => {
  it("answers 404 for unknown paths", async () => {
    const t = await start();
    const response = await post(t.url("/v2/track"), track());

    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe("not_found");
  });

  it("answers 405 for GET", async () => {
    const t = await start();
    const response = await fetch(t.url("/v1/track"));
    const body = await response.json();

    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST, OPTIONS");
    expect(body.error.code).toBe("method_not_allowed");
  });

  it("answers CORS preflight requests", async () => {
    const t = await start();
    const response = await fetch(t.url("/v1/batch"), { method: "OPTIONS" });

    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    expect(response.headers.get("access-control-allow-methods")).toContain("POST");
  });

  it("ignores a query string", async () => {
    const t = await start();
    const response = await post(t.url("/v1/track?source=web"), track());

    expect(response.status).toBe(200);
  });

  it("passes requests to extraRoutes first", async () => {
    test = await startTestProducer(
      {},
      {
        extraRoutes: (req, res) => {
          if (req.url !== "/healthz") return false;
          res.end("ok");
          return true;
        },
      },
    );
    const health = await fetch(test.url("/healthz"));
    const other = await post(test.url("/v1/track"), track());

    expect(await health.text()).toBe("ok");
    expect(other.status).toBe(200);
  });
});

/** Opens a raw TCP connection to the producer and collects what it receives. */
function rawConnection(port: number): { write(text: string): void; destroy(): void; received(): string; ended: Promise<void> } {
  const socket = connect(port, "127.0.0.1");
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => (received += chunk));
  socket.on("error", () => {});
  const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { write: (text) => socket.write(text), destroy: () => socket.destroy(), received: () => received, ended };
}

/** Starts a producer whose extraRoutes reports each request path as it arrives. */
async function startWatched(): Promise<{ t: TestProducer; arrived(path: string): Promise<void> }> {
  const waiters = new Map<string, () => void>();
  const seen = new Set<string>();
  test = await startTestProducer(
    {},
    {
      extraRoutes: (req) => {
        const path = req.url ?? "";
        seen.add(path);
        waiters.get(path)?.();
        return false;
      },
    },
  );
  return {
    t: test,
    arrived: (path) => (seen.has(path) ? Promise.resolve() : new Promise((resolve) => waiters.set(path, resolve))),
  };
}

function requestHead(path: string, contentLength: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basicAuth(WRITE_KEY)}\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n\r\n`;
}

describe("broken clients and Redis", () => {
  it("survives a client abort mid-body", async () => {
    const { t, arrived } = await startWatched();
    const aborted = rawConnection(t.producer.port);
    aborted.write(requestHead("/v1/track?aborted", 500) + '{"userId":');
    await arrived("/v1/track?aborted");
    aborted.destroy();
    await aborted.ended;

    const response = await post(t.url("/v1/track"), track({ messageId: "after-abort" }));
    expect(response.status).toBe(200);
    const stored = await readLanes(t);
    expect(stored.map((entry) => entry.event.messageId)).toEqual(["after-abort"]);

    await t.producer.close();
    expect(t.producer.server.listening).toBe(false);
  });

  it("answers 503 while Redis is down", async () => {
    const config = testConfig();
    const unreachable = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 1 });
    unreachable.on("error", () => {});
    const producer = await startProducer({ config, redis: unreachable, logger: createLogger("silent") });
    try {
      const response = await post(`http://127.0.0.1:${producer.port}/v1/track`, track());
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe("redis_unavailable");
    } finally {
      await producer.close();
      unreachable.disconnect();
    }
  });
});

describe("logs", () => {
  it("never contain keys or bodies", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(...String(chunk).trim().split("\n"));
        callback();
      },
    });
    const config = testConfig({ SOURCES_FILE, LOG_LEVEL: "debug" });
    const redis = testRedis();
    const producer = await startProducer({ config, redis, logger: pino({ level: "debug" }, sink) });
    const url = (path: string) => `http://127.0.0.1:${producer.port}${path}`;

    try {
      await post(url("/v1/track"), track({ note: "body-marker" }), { authorization: basicAuth("web-write-key") });
      await post(url("/v1/track"), track(), { authorization: basicAuth("unknown-write-key") });
      await post(url("/v1/track"), { userId: "u", writeKey: "ios-write-key", secretNote: "body-marker" }, { authorization: "" });
      await post(url("/v1/track"), "{broken body-marker", { authorization: basicAuth("web-write-key") });
      const lane = new RedisKeys(config.redisPrefix).laneId("web", partitionOf("usr_1", config.partitions));
      await redis.set(new RedisKeys(config.redisPrefix).laneStream(lane), "not a stream");
      const failed = await post(url("/v1/track"), track({ note: "body-marker" }), { authorization: basicAuth("web-write-key") });
      expect(failed.status).toBe(503);
    } finally {
      await producer.close();
      await deletePrefix(redis, config.redisPrefix);
      await redis.quit();
    }

    const text = lines.join("\n");
    const listening = lines.map((line) => JSON.parse(line)).find((line) => line.msg === "producer listening");
    expect(listening.sources).toEqual(["web", "ios"]);
    expect(listening.port).toBe(producer.port);
    expect(listening.host).toBe("127.0.0.1");
    expect(text).toContain("failed to store events in Redis");
    expect(text).not.toContain("write-key");
    expect(text).not.toContain("hydra-key");
    expect(text).not.toContain(basicAuth("web-write-key").slice(6));
    expect(text).not.toContain("body-marker");
  });
});

describe("close", () => {
  it("finishes in-flight requests before resolving", async () => {
    const { t, arrived } = await startWatched();
    const body = JSON.stringify(track({ messageId: "in-flight" }));
    const connection = rawConnection(t.producer.port);
    connection.write(requestHead("/v1/track?in-flight", body.length) + body.slice(0, 10));
    await arrived("/v1/track?in-flight");

    let closed = false;
    const closing = t.producer.close().then(() => (closed = true));
    expect(t.producer.draining).toBe(true);
    expect(t.producer.close()).toBe(t.producer.close());
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);

    connection.write(body.slice(10));
    await closing;

    expect(closed).toBe(true);
    await connection.ended;
    expect(connection.received()).toMatch(/^HTTP\/1\.1 200/);
    expect(connection.received().toLowerCase()).toContain("connection: close");
    const [stored] = await readLanes(t);
    expect(stored.event.messageId).toBe("in-flight");
  });

  it("answers 503 to requests while draining", async () => {
    const { t, arrived } = await startWatched();
    const body = JSON.stringify(track());

    // The late request's first header line goes out before the blocker's request, so the
    // server has parsed it by the time the blocker's request arrives.
    const late = rawConnection(t.producer.port);
    late.write("POST /v1/track?late HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const blocker = rawConnection(t.producer.port);
    blocker.write(requestHead("/v1/track?blocker", body.length) + "{");
    await arrived("/v1/track?blocker");

    const closing = t.producer.close();
    late.write(`Authorization: ${basicAuth(WRITE_KEY)}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await late.ended;

    expect(late.received()).toMatch(/^HTTP\/1\.1 503/);
    expect(late.received().toLowerCase()).toContain("connection: close");
    expect(late.received()).toContain('"code":"shutting_down"');

    blocker.write(body.slice(1));
    await closing;
    await blocker.ended;
    expect(blocker.received()).toMatch(/^HTTP\/1\.1 200/);
  });
});
