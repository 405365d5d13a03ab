import { Analytics } from "@segment/analytics-node";
import { afterEach, describe, expect, it } from "vitest";

import { startPipeline, waitFor, type Pipeline } from "./support/pipeline.js";

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.close();
  pipeline = undefined;
});

describe("@segment/analytics-node pointed at the producer", () => {
  it("delivers identify and track to Hydra", async () => {
    pipeline = await startPipeline();
    const analytics = new Analytics({
      writeKey: pipeline.config.sources[0].writeKey,
      host: `http://127.0.0.1:${pipeline.producer.port}`,
      flushAt: 10,
      flushInterval: 50,
    });

    analytics.identify({
      userId: "usr_node_1",
      traits: { email: "ana.silva@alderbank.example.com", company: { name: "Alderbank Logistics", domain: "alderbank.example.com" } },
    });
    analytics.track({ userId: "usr_node_1", event: "Report Created", properties: { feature: "report_builder", eventFlag: "Positive" } });
    analytics.track({ anonymousId: "anon-node-2", event: "Dashboard Viewed", properties: { feature: "dashboards" } });
    await analytics.closeAndFlush({ timeout: 5_000 });

    await pipeline.simulator.waitForEvents(3);
    const identify = pipeline.simulator.state.events({ type: "identify" })[0].event;
    expect(identify.userId).toBe("usr_node_1");
    expect((identify.traits as Record<string, unknown>).email).toBe("ana.silva@alderbank.example.com");
    expect(identify.messageId).toMatch(/^node-next-/);
    expect(identify.writeKey).toBeUndefined();
    expect(identify.receivedAt).toMatch(/Z$/);
    expect(identify.timestamp).toMatch(/Z$/);
    expect((identify.context as { library: { name: string } }).library.name).toBe("@segment/analytics-node");

    const tracks = pipeline.simulator.state.events({ type: "track" }).map((recorded) => recorded.event);
    expect(tracks.map((event) => (event.properties as { eventFlag: string }).eventFlag).sort()).toEqual(["neutral", "positive"]);
    expect(tracks.find((event) => event.anonymousId === "anon-node-2")?.properties).toEqual({ feature: "dashboards", eventFlag: "neutral" });

    const person = pipeline.simulator.state.person("usr_node_1");
    expect(person).toBeDefined();
    await waitFor(async () => (await pipeline!.stats()).delivered === 3, "three events counted as delivered");
  });
});
