import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { assertAdminAccessConfigured, startAdmin, type AdminServer } from "../src/admin/server.js";
import type { Config } from "../src/config/env.js";
import { ConfigError } from "../src/errors/config-error.js";
import { openQueue } from "../src/ops/queues.js";
import { DELIVERY_QUEUE } from "../src/redis/keys.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { capturingLogger, deliveryData, makeDeadLetters } from "./ops-support.js";

const USER = "operator";
const PASSWORD = "correct horse battery staple";

function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}

let config: Config;
let redis: Redis;
let admin: AdminServer | undefined;

beforeEach(() => {
  redis = testRedis();
});

afterEach(async () => {
  await admin?.close();
  admin = undefined;
  await deletePrefix(redis, config.redisPrefix);
  redis.disconnect();
});

describe("admin access check", () => {
  it("rejects a public host without credentials", () => {
    config = testConfig({ ADMIN_HOST: "0.0.0.0" });
    expect(() => assertAdminAccessConfigured(config)).toThrow(ConfigError);
    expect(() => assertAdminAccessConfigured(config)).toThrow(/ADMIN_HOST="0\.0\.0\.0" is not a loopback address/);
  });

  it("allows a public host with credentials", () => {
    config = testConfig({ ADMIN_HOST: "0.0.0.0", ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
    expect(() => assertAdminAccessConfigured(config)).not.toThrow();
  });

  it.each(["127.0.0.1", "::1", "localhost"])("allows %s without credentials", (host) => {
    config = testConfig({ ADMIN_HOST: host });
    expect(() => assertAdminAccessConfigured(config)).not.toThrow();
  });

  it("startAdmin rejects before listening", async () => {
    config = testConfig({ ADMIN_HOST: "0.0.0.0" });
    const { logger, lines } = capturingLogger();
    await expect(startAdmin(config, { logger, redis })).rejects.toThrow(ConfigError);
    expect(lines()).toEqual([]);
  });
});

describe("admin server without credentials on loopback", () => {
  it("warns once and serves without a password", async () => {
    config = testConfig();
    const { logger, lines } = capturingLogger();
    admin = await startAdmin(config, { logger, redis });

    const warnings = lines().filter((line) => line.level === 40);
    expect(warnings.length).toBe(1);
    expect(warnings[0].msg).toBe(
      "admin server runs without authentication because ADMIN_USER and ADMIN_PASSWORD are not set; it listens on loopback only",
    );
    expect((await fetch(`${admin.url}/admin/queues/api/queues`)).status).toBe(200);
  });
});

describe("admin server with credentials", () => {
  let logged: () => Record<string, unknown>[];

  beforeEach(async () => {
    config = testConfig({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
    const capture = capturingLogger();
    logged = capture.lines;
    admin = await startAdmin(config, { logger: capture.logger, redis });
  });

  it("challenges a request without credentials", async () => {
    const response = await fetch(`${admin!.url}/admin/queues`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Basic realm="hydra-sync admin", charset="UTF-8"');
  });

  it("rejects a wrong password", async () => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues`, { headers: basic(USER, "guess-7f3a") });
    expect(response.status).toBe(401);

    const warnings = logged().filter((line) => line.level === 40);
    expect(warnings.map((line) => line.msg)).toEqual(["admin request rejected: wrong HTTP Basic credentials"]);
    expect(warnings[0].path).toBe("/admin/queues/api/queues");
    expect(JSON.stringify(logged())).not.toContain("guess-7f3a");
    expect(JSON.stringify(logged())).not.toContain(Buffer.from(`${USER}:guess-7f3a`).toString("base64"));
  });

  it("rejects a wrong user", async () => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues`, { headers: basic("root", PASSWORD) });
    expect(response.status).toBe(401);
  });

  it("serves Bull Board over both queues", async () => {
    const page = await fetch(`${admin!.url}/admin/queues`, { headers: basic(USER, PASSWORD) });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<title>hydra-sync</title>");

    const response = await fetch(`${admin!.url}/admin/queues/api/queues`, { headers: basic(USER, PASSWORD) });
    const body = (await response.json()) as { queues: { name: string; readOnlyMode: boolean; allowRetries: boolean }[] };
    expect(body.queues.map((queue) => queue.name).sort()).toEqual(["engage-sync", "hydra-delivery"]);
    expect(body.queues.every((queue) => !queue.readOnlyMode && queue.allowRetries)).toBe(true);
  });

  it("keeps health checks open", async () => {
    expect((await fetch(`${admin!.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin!.url}/readyz`)).status).toBe(200);
  });

  it("requires credentials for /metrics", async () => {
    expect((await fetch(`${admin!.url}/metrics`)).status).toBe(401);

    const response = await fetch(`${admin!.url}/metrics`, { headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('hydra_sync_queue_jobs{queue="engage-sync",state="failed"} 0');
  });

  it("lists Engage audiences", async () => {
    const response = await fetch(`${admin!.url}/v1/audiences`, { headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ audiences: [] });
  });

  it("retries a failed job from the API", async () => {
    await makeDeadLetters(config, redis, [{ id: "default.p0-1-0", data: deliveryData("default", "default.p0", 2), rejection: { code: "bad_request", status: 400, error: "invalid" } }]);

    const response = await fetch(`${admin!.url}/admin/queues/api/queues/${DELIVERY_QUEUE}/default.p0-1-0/retry`, { method: "PUT", headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(204);

    const queue = openQueue(config, redis, DELIVERY_QUEUE);
    expect(await queue.getJobState("default.p0-1-0")).toBe("waiting");
    await queue.close();
  });

  it("drains on close", async () => {
    const closing = admin!.close();
    expect(admin!.isDraining()).toBe(true);
    await closing;
    admin = undefined;
  });
});

describe("admin server in read-only mode", () => {
  const jobId = "default.p0-1-0";

  beforeEach(async () => {
    config = testConfig({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD, ADMIN_READ_ONLY: "true" });
    admin = await startAdmin(config, { logger: capturingLogger().logger, redis });
    await makeDeadLetters(config, redis, [{ id: jobId, data: deliveryData("default", "default.p0", 2), rejection: { code: "bad_request", status: 400, error: "invalid" } }]);
  });

  it("marks every queue read-only", async () => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues`, { headers: basic(USER, PASSWORD) });
    const body = (await response.json()) as { queues: { readOnlyMode: boolean; allowRetries: boolean }[] };
    expect(body.queues.map((queue) => [queue.readOnlyMode, queue.allowRetries])).toEqual([
      [true, false],
      [true, false],
    ]);
  });

  // Bull Board 9 serves its change actions with PUT, and readOnlyMode makes each respond with 405.
  it.each([
    ["retry one job", `/${jobId}/retry`],
    ["retry every failed job", "/retry/failed"],
    ["clean the failed jobs", "/clean/failed"],
    ["clean one job", `/${jobId}/clean`],
    ["promote delayed jobs", "/promote"],
    ["promote one job", `/${jobId}/promote`],
    ["pause the queue", "/pause"],
  ])("rejects: %s", async (_name, path) => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues/${DELIVERY_QUEUE}${path}`, { method: "PUT", headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(405);
    expect(await response.json()).toEqual({ error: { key: "ERRORS.QUEUE_READ_ONLY" } });

    const queue = openQueue(config, redis, DELIVERY_QUEUE);
    expect(await queue.getJobState(jobId)).toBe("failed");
    await queue.close();
  });

  it("has no POST retry route", async () => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues/${DELIVERY_QUEUE}/${jobId}/retry`, { method: "POST", headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(404);

    const queue = openQueue(config, redis, DELIVERY_QUEUE);
    expect(await queue.getJobState(jobId)).toBe("failed");
    await queue.close();
  });

  it("still shows the failed job", async () => {
    const response = await fetch(`${admin!.url}/admin/queues/api/queues/${DELIVERY_QUEUE}/${jobId}`, { headers: basic(USER, PASSWORD) });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { job: { id: string; failedReason: string } };
    expect(body.job.id).toBe(jobId);
    expect(body.job.failedReason).toBe("bad_request (400): invalid");
  });
});

describe("admin audiences", () => {
  it("serves the injected list", async () => {
    config = testConfig();
    const audiences = [{ source: "default", audience: "churn_risk_accounts", pending: 2, nextSyncAt: 1_741_700_000_000 }];
    admin = await startAdmin(config, { logger: capturingLogger().logger, redis, listAudiences: async () => audiences });

    const response = await fetch(`${admin.url}/v1/audiences`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ audiences });
  });
});

describe("admin server start failure", () => {
  it("rejects a port in use", async () => {
    config = testConfig();
    const first = await startAdmin(config, { logger: capturingLogger().logger, redis });
    try {
      const taken = { ...config, adminPort: first.port };
      await expect(startAdmin(taken, { logger: capturingLogger().logger, redis })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
