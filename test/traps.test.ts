import { spawn, type ChildProcess } from "node:child_process";
import { Writable } from "node:stream";
import { Queue } from "bullmq";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { batchJobId } from "../src/batching/router.js";
import { REDACTED_PATHS } from "../src/logging/logger.js";
import { createRedis, warnUnlessNoEviction } from "../src/redis/connection.js";
import { deletePrefix, testRedis, uniquePrefix } from "./support/redis.js";

function captureLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  const logger = pino({ level: "debug", redact: { paths: REDACTED_PATHS, censor: "[redacted]" } }, sink);
  return { logger, lines: () => chunks.join("").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line)) };
}

describe("BullMQ job ids", () => {
  const redis = testRedis();
  const prefix = uniquePrefix("jobid");
  const queue = new Queue("trap-check", { connection: redis, prefix });

  afterAll(async () => {
    await queue.close();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it("rejects ids with a colon", async () => {
    await expect(queue.add("job", {}, { jobId: "lane:1-0" })).rejects.toThrow();
  });

  it("rejects ids made only of digits", async () => {
    await expect(queue.add("job", {}, { jobId: "12345" })).rejects.toThrow();
  });

  it("accepts the router's batch ids", async () => {
    const jobId = batchJobId("default.p3", "1733340000000-7");
    expect(jobId).toBe("default.p3-1733340000000-7");
    const job = await queue.add("job", {}, { jobId });
    expect(job.id).toBe(jobId);
  });
});

describe("when Redis may evict keys", () => {
  let server: ChildProcess;
  const port = 20_000 + Math.floor(Math.random() * 20_000);

  beforeAll(async () => {
    // A private Redis on loopback: the shared server's policy must not change.
    server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru"], { stdio: "ignore" });
    const probe = createRedis(`redis://127.0.0.1:${port}`);
    probe.on("error", () => {});
    await probe.ping();
    probe.disconnect();
  });

  afterAll(() => {
    server?.kill("SIGTERM");
  });

  it("logs a warning naming the setting", async () => {
    const redis = createRedis(`redis://127.0.0.1:${port}`);
    const { logger, lines } = captureLogger();

    await warnUnlessNoEviction(redis, logger);
    redis.disconnect();

    const [warning] = lines();
    expect(warning.level).toBe(40);
    expect(warning.maxmemoryPolicy).toBe("allkeys-lru");
    expect(String(warning.msg)).toContain("maxmemory-policy to noeviction");
  });

  it("stays quiet under noeviction", async () => {
    const redis = testRedis();
    const { logger, lines } = captureLogger();
    const policy = ((await redis.config("GET", "maxmemory-policy")) as string[])[1];

    await warnUnlessNoEviction(redis, logger);
    redis.disconnect();

    expect(lines().filter((line) => line.level === 40)).toHaveLength(policy === "noeviction" ? 0 : 1);
  });
});

describe("log redaction", () => {
  it.each([
    ["writeKey", { writeKey: "wk_secret" }],
    ["hydraApiKey", { source: { hydraApiKey: "hk_secret" } }],
    ["authorization", { headers: { authorization: "Bearer hk_secret" } }],
    ["password", { password: "pw_secret" }],
  ])("hides %s", (_name, fields) => {
    const { logger, lines } = captureLogger();
    logger.info(fields, "message");
    const text = JSON.stringify(lines());
    expect(text).not.toMatch(/_secret/);
    expect(text).toContain("[redacted]");
  });
});
