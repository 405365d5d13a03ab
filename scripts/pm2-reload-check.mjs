#!/usr/bin/env node
/**
 * Checks that `pm2 reload` of the delivery workers loses no event.
 *
 * Starts ecosystem.config.cjs and the Hydra simulator under the repository's own PM2
 * (node_modules/.bin/pm2) with a PM2_HOME of its own in a temporary directory, so it
 * never touches another PM2 daemon. It sends a steady stream of track events to the
 * producer, runs `pm2 reload hydra-sync-worker` while the stream runs, then compares
 * the sent messageIds with the events the simulator accepted (GET /_sim/events).
 * Ends with `pm2 kill` for its PM2_HOME and deletes its Redis keys.
 *
 * Usage: npm run build && node scripts/pm2-reload-check.mjs [--events N] [--rate N]
 *   --events N  events to send, at most 10000 (the simulator keeps the last 10000); default 3000
 *   --rate N    events per second; default 200
 * Needs Redis at REDIS_URL (default redis://127.0.0.1:6379). Exits 0 when every event arrived.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

import { Redis } from "ioredis";

const run = promisify(execFile);
const repository = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const pm2Bin = join(repository, "node_modules", ".bin", "pm2");
const cliMain = join(repository, "dist", "src", "cli", "main.js");

const MAX_EVENTS = 10_000;
const EVENTS_PER_REQUEST = 20;
const DELIVERY_TIMEOUT_MS = 120_000;

function log(message) {
  process.stderr.write(`pm2-reload-check: ${message}\n`);
}

function parseOptions() {
  const { values } = parseArgs({ options: { events: { type: "string", default: "3000" }, rate: { type: "string", default: "200" } } });
  const events = Number(values.events);
  const rate = Number(values.rate);
  if (!Number.isInteger(events) || events < EVENTS_PER_REQUEST || events > MAX_EVENTS) {
    throw new Error(`Invalid --events ${values.events}: use a whole number from ${EVENTS_PER_REQUEST} to ${MAX_EVENTS}.`);
  }
  if (!Number.isInteger(rate) || rate < 1) throw new Error(`Invalid --rate ${values.rate}: use a whole number of events per second.`);
  return { events, rate };
}

/** Asks the OS for a free TCP port on loopback. */
async function freePort() {
  const server = createServer();
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

async function waitFor(description, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // Not up yet.
    }
    if (Date.now() > deadline) throw new Error(`${description} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((done) => setTimeout(done, 250));
  }
}

function trackEvent(runId, index) {
  return {
    type: "track",
    event: "Report Viewed",
    userId: `usr_pm2_check_${index % 50}`,
    messageId: `pm2-check-${runId}-${index}`,
    timestamp: new Date().toISOString(),
    properties: { feature: "reports", sequence: index },
  };
}

/** Posts one batch and returns how many retries it took; retries 5xx and connection errors, as Segment's libraries do. */
async function postBatch(producerUrl, writeKey, batch) {
  const authorization = `Basic ${Buffer.from(`${writeKey}:`).toString("base64")}`;
  for (let attempt = 1; ; attempt++) {
    let response;
    try {
      response = await fetch(`${producerUrl}/v1/batch`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization },
        body: JSON.stringify({ batch, sentAt: new Date().toISOString() }),
      });
    } catch (error) {
      if (attempt >= 10) throw error;
    }

    if (response?.status === 200) return attempt - 1;
    if (response && response.status < 500) throw new Error(`the producer responded with ${response.status}: ${await response.text()}`);
    if (attempt >= 10) throw new Error(`the producer failed ${attempt} times; the last status was ${response?.status ?? "none"}`);
    await new Promise((done) => setTimeout(done, 100 * attempt));
  }
}

async function deletePrefix(redisUrl, prefix) {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1_000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

async function main() {
  const options = parseOptions();
  if (!existsSync(cliMain)) throw new Error(`${cliMain} is missing; run npm run build first.`);
  if (!existsSync(pm2Bin)) throw new Error(`${pm2Bin} is missing; run npm ci first.`);

  const runId = randomUUID().slice(0, 8);
  const pm2Home = mkdtempSync(join(tmpdir(), "hydra-sync-pm2-"));
  const [producerPort, adminPort, simulatorPort] = [await freePort(), await freePort(), await freePort()];
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const prefix = `hs-pm2-check-${runId}`;
  const writeKey = `pm2-check-write-key-${runId}`;

  const env = {
    ...process.env,
    PM2_HOME: pm2Home,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    PRODUCER_HOST: "127.0.0.1",
    PRODUCER_PORT: String(producerPort),
    ADMIN_HOST: "127.0.0.1",
    ADMIN_PORT: String(adminPort),
    SIM_PORT: String(simulatorPort),
    HYDRA_API_URL: `http://127.0.0.1:${simulatorPort}`,
    SEGMENT_WRITE_KEY: writeKey,
    HYDRA_API_KEY: `pm2-check-hydra-key-${runId}`,
    HYDRA_SYNC_PRODUCER_INSTANCES: "2",
    HYDRA_SYNC_WORKER_INSTANCES: "2",
    BATCH_LINGER_MS: "50",
    LOG_LEVEL: "warn",
  };
  const pm2 = (...args) => run(pm2Bin, args, { env, cwd: repository, maxBuffer: 16 * 1024 * 1024 });

  const producerUrl = `http://127.0.0.1:${producerPort}`;
  const simulatorUrl = `http://127.0.0.1:${simulatorPort}`;
  let failed = true;
  try {
    log(`PM2_HOME ${pm2Home}, REDIS_PREFIX ${prefix}`);
    await pm2("start", cliMain, "--name", "hydra-sync-check-simulator", "--", "simulator");
    await pm2("start", "ecosystem.config.cjs");
    await waitFor("the simulator starting", async () => (await fetch(`${simulatorUrl}/_sim/stats`)).ok);
    await waitFor("the producer becoming ready", async () => (await fetch(`${producerUrl}/readyz`)).ok);
    await waitFor("the admin server becoming ready", async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok);

    const sent = [];
    const requests = options.events / EVENTS_PER_REQUEST;
    const intervalMs = (1_000 * EVENTS_PER_REQUEST) / options.rate;
    let reload;
    let retries = 0;
    const started = Date.now();

    for (let request = 0; request < requests; request++) {
      if (request === Math.floor(requests / 3)) {
        log(`sent ${sent.length} events; running pm2 reload hydra-sync-worker`);
        reload = pm2("reload", "hydra-sync-worker").then(() => log(`pm2 reload finished after ${sent.length} events were sent`));
      }

      const batch = Array.from({ length: EVENTS_PER_REQUEST }, (_, offset) => trackEvent(runId, request * EVENTS_PER_REQUEST + offset));
      retries += await postBatch(producerUrl, writeKey, batch);
      sent.push(...batch.map((event) => event.messageId));

      const due = started + (request + 1) * intervalMs;
      if (due > Date.now()) await new Promise((done) => setTimeout(done, due - Date.now()));
    }
    await reload;
    log(`sent ${sent.length} events in ${((Date.now() - started) / 1000).toFixed(1)} s (${retries} requests retried)`);

    await waitFor(
      "the delivery of every event",
      async () => (await (await fetch(`${simulatorUrl}/_sim/stats`)).json()).eventsAccepted >= sent.length,
      DELIVERY_TIMEOUT_MS,
    ).catch((error) => log(error.message));

    const stats = await (await fetch(`${simulatorUrl}/_sim/stats`)).json();
    const { events } = await (await fetch(`${simulatorUrl}/_sim/events?limit=${MAX_EVENTS}`)).json();
    const received = new Set(events.map((record) => record.event.messageId));
    const missing = sent.filter((messageId) => !received.has(messageId));
    const { stdout: list } = await pm2("jlist");
    const restarts = JSON.parse(list)
      .filter((app) => app.name === "hydra-sync-worker")
      .map((app) => app.pm2_env.restart_time);

    process.stdout.write(
      `${JSON.stringify({ sent: sent.length, accepted: stats.eventsAccepted, duplicates: stats.duplicates, missing: missing.length, workerRestarts: restarts })}\n`,
    );
    if (missing.length > 0) log(`missing messageIds, first 20: ${missing.slice(0, 20).join(", ")}`);
    else if (restarts.some((count) => count < 1)) log("a worker was not restarted by pm2 reload, so the check proves nothing");
    else failed = false;
  } finally {
    await pm2("kill").catch((error) => log(`pm2 kill failed: ${error.message}`));
    rmSync(pm2Home, { recursive: true, force: true });
    await deletePrefix(redisUrl, prefix).catch((error) => log(`could not delete the Redis keys under ${prefix}: ${error.message}`));
  }

  log(failed ? "FAILED" : "every event reached the simulator");
  process.exitCode = failed ? 1 : 0;
}

main().catch((error) => {
  log(error.stack ?? String(error));
  process.exitCode = 1;
});
