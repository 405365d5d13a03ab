import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

import { startPipeline, track, waitFor, type Pipeline } from "./support/pipeline.js";

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

function sourcesFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "hydra-sync-sources-"));
  const path = join(dir, "sources.json");
  writeFileSync(
    path,
    JSON.stringify([
      { name: "web", writeKey: "write-key-web", hydraApiKey: "hydra-key-web" },
      { name: "billing", writeKey: "write-key-billing", hydraApiKey: "hydra-key-billing" },
    ]),
  );
  return path;
}

describe("with several sources", () => {
  it("delivers each source with its own API key", async () => {
    pipeline = await startPipeline({ SOURCES_FILE: sourcesFile() });

    await pipeline.send([track("user-w", 1)], "write-key-web");
    await pipeline.send([track("user-b", 1)], "write-key-billing");
    await pipeline.simulator.waitForEvents(2);

    const hashes = new Set(pipeline.simulator.state.batches().map((batch) => batch.apiKeyHash));
    expect(hashes.size).toBe(2);
  });

  it("keeps delivering one key while another is refused", async () => {
    pipeline = await startPipeline({ SOURCES_FILE: sourcesFile(), HYDRA_PAUSE_RETRY: "30s" });
    pipeline.simulator.addFault({ apiKey: "hydra-key-web", count: 1_000, status: 401 });

    await pipeline.send([track("user-w", 1)], "write-key-web");
    await waitFor(async () => (await pipeline!.redis.exists(pipeline!.keys.pausedSource("web"))) === 1, "web paused");

    for (let i = 1; i <= 5; i++) await pipeline.send([track("user-b", i)], "write-key-billing");
    await pipeline.simulator.waitForEvents(5);

    expect(pipeline.simulator.state.events({ userId: "user-b" })).toHaveLength(5);
    expect(pipeline.simulator.state.events({ userId: "user-w" })).toHaveLength(0);
    expect(await pipeline.worker!.queue.getFailedCount()).toBe(0);
    expect(await pipeline.worker!.queue.getDelayedCount()).toBe(1);
  });

  it("keeps delivering one key while another is rate-limited", async () => {
    pipeline = await startPipeline({ SOURCES_FILE: sourcesFile() });
    pipeline.simulator.addFault({ apiKey: "hydra-key-web", count: 1_000, status: 429, retryAfter: "3600" });

    await pipeline.send([track("user-w", 1)], "write-key-web");
    await waitFor(async () => (await pipeline!.redis.exists(pipeline!.keys.rateLimitedSource("web"))) === 1, "web rate-limited");

    await pipeline.send([track("user-b", 1)], "write-key-billing");
    await pipeline.simulator.waitForEvents(1);

    const limitedUntil = Number(await pipeline.redis.get(pipeline.keys.rateLimitedSource("web")));
    expect(limitedUntil).toBeGreaterThan(Date.now() + 3_500_000);
    expect(pipeline.simulator.state.events({ userId: "user-b" })).toHaveLength(1);
  });
});
