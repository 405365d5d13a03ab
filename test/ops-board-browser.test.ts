import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { chromium, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startAdmin, type AdminServer } from "../src/admin/server.js";
import type { Config } from "../src/config/env.js";
import { startProducer, type Producer } from "../src/producer/index.js";
import { openQueue } from "../src/ops/queues.js";
import { DELIVERY_QUEUE } from "../src/redis/keys.js";
import { startSimulator, type Simulator } from "../src/simulator/index.js";
import { startWorker, type WorkerService } from "../src/worker/index.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { capturingLogger } from "./ops-support.js";

/**
 * Drives Bull Board in Debian's headless Chromium the way an operator would: log in,
 * find the dead letter that a Hydra 400 left, retry it from the page, and see the
 * events reach the Hydra simulator. Screenshots land in test-artifacts/.
 */

const CHROMIUM = "/usr/bin/chromium";
const USER = "operator";
const PASSWORD = "board test password";
const WRITE_KEY = "test-write-key";
const ARTIFACTS = join(process.cwd(), "test-artifacts");

const messageIds = ["board-test-1", "board-test-2"];

let config: Config;
let redis: Redis;
let simulator: Simulator;
let producer: Producer;
let worker: WorkerService;
let admin: AdminServer;
let context: BrowserContext;
let userDataDir: string;

async function waitUntil(description: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function jobStates(): Promise<Record<string, number>> {
  const queue = openQueue(config, redis, DELIVERY_QUEUE);
  try {
    return await queue.getJobCounts("failed", "completed", "waiting", "active", "delayed");
  } finally {
    await queue.close();
  }
}

// NOTE: skipped where Debian's chromium is not installed (apt-get install -y chromium).
describe.skipIf(!existsSync(CHROMIUM))("Bull Board in Chromium", () => {
  beforeAll(async () => {
    const logger = capturingLogger("warn").logger;
    simulator = await startSimulator({ port: 0, host: "127.0.0.1", logger });
    config = testConfig({
      HYDRA_API_URL: simulator.url,
      ADMIN_USER: USER,
      ADMIN_PASSWORD: PASSWORD,
      PARTITIONS: "1",
      BATCH_LINGER_MS: "0",
    });
    redis = testRedis();

    producer = await startProducer({ config, redis, logger });
    worker = await startWorker({ config, logger });
    admin = await startAdmin(config, { logger, redis });

    userDataDir = mkdtempSync(join(tmpdir(), "hydra-sync-chromium-"));
    mkdirSync(ARTIFACTS, { recursive: true });
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1400, height: 900 },
    });
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await admin?.close();
    await worker?.close();
    await producer?.close();
    await simulator?.close();
    if (redis) {
      await deletePrefix(redis, config.redisPrefix);
      redis.disconnect();
    }
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  }, 60_000);

  it("retries a dead letter from the page", async () => {
    // Hydra rejects the first request with 400, which dead-letters the batch at once.
    simulator.addFault({ status: 400, count: 1 });
    const events = messageIds.map((messageId) => ({ type: "track", event: "Report Exported", userId: "usr_board", messageId, properties: { feature: "reports" } }));
    const response = await fetch(`http://127.0.0.1:${producer.port}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString("base64")}` },
      body: JSON.stringify({ batch: events }),
    });
    expect(response.status).toBe(200);
    await waitUntil("the dead letter", async () => (await jobStates()).failed === 1);
    expect(simulator.state.stats().eventsAccepted).toBe(0);

    const page = await context.newPage();
    await page.goto(`${admin.url}/admin/queues/queue/${DELIVERY_QUEUE}?status=failed`);
    await page.getByText("bad_request (400)").first().waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(ARTIFACTS, "bull-board-failed-job.png"), fullPage: true });

    // NOTE: Bull Board 9.10 gives its job action buttons an icon and no accessible name.
    // The job's retry button is the icon-only button with the refresh icon, because "Retry all" has text.
    const retryJob = page.locator("button:has(svg.lucide-refresh-cw)").filter({ hasNotText: /\S/ });
    expect(await retryJob.count()).toBe(1);
    await retryJob.click();
    await page.getByText("Are you sure that you want to retry this job?").waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "bull-board-retry-confirm.png"), fullPage: true });
    await page.getByRole("button", { name: "Confirm", exact: true }).click();

    await simulator.waitForEvents(2, 15_000);
    await waitUntil("the completed job", async () => (await jobStates()).completed === 1);

    const delivered = simulator.state.events().map((record) => record.event.messageId).sort();
    expect(delivered).toEqual(messageIds);
    expect(await jobStates()).toEqual({ failed: 0, completed: 1, waiting: 0, paused: 0, active: 0, delayed: 0 });

    await page.goto(`${admin.url}/admin/queues/queue/${DELIVERY_QUEUE}?status=completed`);
    await page.getByText("attempt #2").waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(ARTIFACTS, "bull-board-retried-job.png"), fullPage: true });
    await page.close();
  }, 60_000);

  it("asks for credentials", async () => {
    const response = await fetch(`${admin.url}/admin/queues/queue/${DELIVERY_QUEUE}`);
    expect(response.status).toBe(401);
  });
});
