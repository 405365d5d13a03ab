import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

import { sendFile } from "../src/cli/send.js";
import { startPipeline, type Pipeline } from "./support/pipeline.js";

/** The built CLI; `npm test` builds it before vitest runs. */
const CLI = join(import.meta.dirname, "..", "dist", "src", "cli", "main.js");

function runCli(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 20_000 });
}

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

describe("hydra-sync CLI", () => {
  it("explains how to start Redis", () => {
    const result = runCli(["demo"], { REDIS_URL: "redis://127.0.0.1:1" });

    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain("redis-server");
    expect(lines[0]).toContain("docker compose up redis");
  });

  it("names an invalid variable and its fix", () => {
    const result = runCli(["worker"], { BATCH_LINGER_MS: "soon" });

    expect(result.status).toBe(2);
    expect(result.stderr.trim()).toBe(
      'hydra-sync worker: Invalid configuration: BATCH_LINGER_MS="soon" is not valid; use milliseconds from 0 to 60000, such as "250" or "250ms".',
    );
  });

  it("rejects an unknown command", () => {
    const result = runCli(["deliver"], {});
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown command "deliver"');
  });
});

describe("sendFile", () => {
  it("reports rejected lines by number", async () => {
    pipeline = await startPipeline({}, { worker: false });
    const dir = mkdtempSync(join(tmpdir(), "hydra-sync-send-"));
    const file = join(dir, "events.jsonl");
    writeFileSync(
      file,
      [
        JSON.stringify({ type: "track", userId: "u1", event: "Report Viewed", properties: { feature: "reports" } }),
        "{ not json",
        JSON.stringify({ type: "track", userId: "u1", properties: {} }),
        "",
        JSON.stringify({ type: "identify", userId: "u2", traits: { email: "u2@example.com" } }),
      ].join("\n"),
    );

    const report = await sendFile({ file, url: `http://127.0.0.1:${pipeline.producer.port}`, writeKey: pipeline.config.sources[0].writeKey, progress: new (await import("node:stream")).PassThrough() });

    expect(report.accepted).toBe(2);
    expect(report.rejected.map((rejection) => [rejection.line, rejection.reason])).toEqual([
      [2, "invalid_json"],
      [3, expect.any(String)],
    ]);
    expect(report.requests).toBe(1);
  });
});
