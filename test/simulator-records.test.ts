import { readFileSync } from "node:fs";

import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import { startSimulator, type Simulator } from "../src/simulator/index.js";

const NOW = Date.parse("2025-03-11T18:00:00.000Z");
const RECEIVED_AT = "2025-03-11T17:59:59.000Z";
const silent = pino({ level: "silent" });

const EVENT_FLAGS = new Set(["negative", "neutral", "positive"]);

/**
 * Shapes a line of examples/events.jsonl the way the producer forwards it to Hydra:
 * identify and track only, userId as a string, timestamp in UTC, receivedAt set,
 * properties.eventFlag normalized, no writeKey or sentAt.
 */
function normalize(raw: Record<string, unknown>, line: number): Record<string, unknown> | undefined {
  if (raw.type !== "identify" && raw.type !== "track") return undefined;

  const event: Record<string, unknown> = { ...raw };
  delete event.writeKey;
  delete event.sentAt;
  if (typeof event.userId === "number") event.userId = String(event.userId);
  event.messageId ??= `generated-${line}`;
  event.receivedAt = RECEIVED_AT;
  event.timestamp = new Date(Date.parse((event.timestamp as string | undefined) ?? RECEIVED_AT)).toISOString();

  if (event.type === "track") {
    const properties = { ...((event.properties as Record<string, unknown> | undefined) ?? {}) };
    const flag = typeof properties.eventFlag === "string" ? properties.eventFlag.trim().toLowerCase() : "";
    properties.eventFlag = EVENT_FLAGS.has(flag) ? flag : "neutral";
    event.properties = properties;
  }
  return event;
}

function exampleEvents(): Record<string, unknown>[] {
  const lines = readFileSync(new URL("../examples/events.jsonl", import.meta.url), "utf8").trim().split("\n");
  return lines.map((text, index) => normalize(JSON.parse(text), index + 1)).filter((event) => event !== undefined);
}

async function postBatch(events: unknown[], apiKey = "records-key"): Promise<{ status: number; body: any }> {
  const response = await fetch(`${simulator.url}/v1/batch`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", "idempotency-key": "records-1" },
    body: JSON.stringify({ sentAt: new Date(NOW).toISOString(), batch: events }),
  });
  return { status: response.status, body: await response.json() };
}

let simulator: Simulator;

afterEach(async () => {
  await simulator.close();
});

describe("with the example day of events", () => {
  let events: Record<string, unknown>[];

  beforeEach(async () => {
    simulator = await startSimulator({ port: 0, logger: silent, now: () => NOW });
    events = exampleEvents();
    const response = await postBatch(events);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ accepted: events.length });
  });

  it("accepts every identify and track", () => {
    expect(events).toHaveLength(136);
    expect(simulator.state.stats()).toMatchObject({ requests: 1, batches: 1, eventsAccepted: 136, duplicates: 0, rejected: 0 });
  });

  it("merges a person's traits", () => {
    const maya = simulator.state.person("usr_j63ymmtsh2");

    expect(maya?.traits).toMatchObject({ email: "maya.okafor@alderbank.example.com", firstName: "Maya", lastName: "Okafor", title: "VP Operations" });
    expect(maya?.anonymousIds).toEqual(["da8ae304-0aa7-4631-9d84-390795018560"]);
    expect(maya?.companyId).toBe("alderbank.example.com");
  });

  it("finds a person by anonymousId", () => {
    expect(simulator.state.person("da8ae304-0aa7-4631-9d84-390795018560")?.id).toBe("usr_j63ymmtsh2");
  });

  it("keys a numeric userId as text", () => {
    const kwame = simulator.state.person("10482");

    expect(kwame?.userId).toBe("10482");
    expect(kwame?.companyId).toBe("fernhill.example.org");
  });

  it("counts feature usage by eventFlag", () => {
    const kwame = simulator.state.person("10482");

    expect(kwame?.features).toEqual({
      data_connectors: { negative: 0, neutral: 1, positive: 0 },
      auth: { negative: 1, neutral: 0, positive: 0 },
      comments: { negative: 0, neutral: 2, positive: 0 },
    });
    expect(kwame?.eventFlags).toEqual({ negative: 1, neutral: 3, positive: 0 });
    expect(kwame?.tracks).toBe(4);
  });

  it("counts tracks without a feature", () => {
    const finn = simulator.state.person("usr_jfhp88nn2w");

    expect(finn?.events["Audience Entered"]).toBe(1);
    expect(Object.keys(finn?.features ?? {}).sort()).toEqual(["api_keys", "auth", "scheduled_reports"]);
    expect(finn?.eventFlags.neutral).toBe(5);
  });

  it("builds companies from traits.company", () => {
    const alderbank = simulator.state.companies().find((company) => company.id === "alderbank.example.com");

    expect(alderbank).toMatchObject({ name: "Alderbank Logistics", domain: "alderbank.example.com", source: "traits.company" });
    expect(alderbank?.traits).toMatchObject({ industry: "Logistics", plan: "business" });
    expect(alderbank?.personIds.sort()).toEqual(["usr_hndtptxbk1", "usr_j63ymmtsh2", "usr_qmbwzata49", "usr_sjc2qp6jqq"]);
  });

  it("merges later company traits", () => {
    // Line 158, a CRM sync late in the day, raises Alderbank's employee_count from 420 to 430.
    const alderbank = simulator.state.companies().find((company) => company.id === "alderbank.example.com");

    expect(alderbank?.traits.employee_count).toBe(430);
  });

  it("falls back to the email domain", () => {
    const quinlan = simulator.state.person("38f87d44-0ef6-4bf0-94bb-ba3dad9fdb0e");
    const company = simulator.state.companies().find((record) => record.id === "example.org");

    expect(quinlan?.companyId).toBe("example.org");
    expect(company).toMatchObject({ source: "email", domain: "example.org" });
  });

  it("keeps eight companies plus one email domain", () => {
    expect(simulator.state.companies().map((company) => company.id).sort()).toEqual([
      "alderbank.example.com",
      "brightfold.example.org",
      "cobaltridge.example.com",
      "dunmore.example.com",
      "evenkeel.example.org",
      "example.org",
      "fernhill.example.org",
      "glasswing.example.com",
      "harborline.example.com",
    ]);
  });

  it("tracks audience memberships", () => {
    const audiences = Object.fromEntries(simulator.state.audiences().map((audience) => [audience.key, audience]));

    expect(audiences.trial_power_users.members.sort()).toEqual(["usr_dprt62ychb", "usr_jfhp88nn2w", "usr_zcs7z4sv7v"]);
    expect(audiences.trial_power_users).toMatchObject({ entered: 5, exited: 2, computationId: "aud_rr1qzfRBMl9ydnaFwkrLJ5PvtJf" });
    expect(audiences.churn_risk_accounts.members.sort()).toEqual(["usr_4vjge4s1d3", "usr_fv30b4nj3k"]);
    expect(audiences.churn_risk_accounts).toMatchObject({ entered: 4, exited: 2 });
    expect(audiences.expansion_ready.members.sort()).toEqual(["usr_ppe7qw2647", "usr_ze3rpsvd2e"]);
    expect(audiences.expansion_ready).toMatchObject({ entered: 3, exited: 1 });
  });

  it("records a person's memberships", () => {
    expect(simulator.state.person("usr_t264sjf485")?.audiences).toEqual({ trial_power_users: false });
    expect(simulator.state.person("usr_87v65vt5gp")?.audiences).toEqual({ expansion_ready: false });
    expect(simulator.state.person("usr_dprt62ychb")?.audiences).toEqual({ trial_power_users: true });
  });

  it("keeps audience keys out of traits", () => {
    const hana = simulator.state.person("usr_dprt62ychb");

    expect(hana?.traits).not.toHaveProperty("trial_power_users");
    expect(hana?.traits.email).toBe("hana.kobayashi@cobaltridge.example.com");
  });

  it("stores computed traits apart", () => {
    expect(simulator.state.person("usr_82qy73rtda")?.computedTraits).toEqual({ last_feature_used: "scheduled_reports" });
    expect(simulator.state.person("usr_hndtptxbk1")?.computedTraits).toEqual({ reports_created_30d: 12 });
    expect(simulator.state.person("usr_hndtptxbk1")?.traits).not.toHaveProperty("reports_created_30d");
  });

  it("counts a repeated batch as duplicates", async () => {
    const before = simulator.state.person("10482");

    const response = await postBatch(events);

    expect(response.status).toBe(200);
    expect(simulator.state.stats()).toMatchObject({ requests: 2, eventsAccepted: 136, duplicates: 136 });
    expect(simulator.state.person("10482")).toEqual(before);
    expect(simulator.state.events()).toHaveLength(136);
    expect(simulator.state.batches()[1]).toMatchObject({ accepted: 0, duplicates: 136 });
  });

  it("serves persons over HTTP", async () => {
    const response = await fetch(`${simulator.url}/_sim/persons/10482`);
    const person = await response.json();

    expect(response.status).toBe(200);
    expect(person.features.auth).toEqual({ negative: 1, neutral: 0, positive: 0 });
  });

  it("serves audiences over HTTP", async () => {
    const response = await fetch(`${simulator.url}/_sim/audiences`);
    const { audiences } = await response.json();

    expect(audiences.map((audience: { key: string }) => audience.key).sort()).toEqual(["churn_risk_accounts", "expansion_ready", "trial_power_users"]);
  });
});

describe("latency", () => {
  beforeEach(async () => {
    simulator = await startSimulator({ port: 0, logger: silent, now: () => NOW });
  });

  function eventReceived(n: number, msAgo: number) {
    return {
      type: "track",
      messageId: `latency-${n}`,
      userId: "user-latency",
      event: "Measured",
      properties: { eventFlag: "neutral" },
      timestamp: new Date(NOW - msAgo).toISOString(),
      receivedAt: new Date(NOW - msAgo).toISOString(),
    };
  }

  it("reports nulls before any event", async () => {
    const response = await fetch(`${simulator.url}/_sim/latency`);

    expect(await response.json()).toEqual({ count: 0, p50: null, p95: null, p99: null, max: null });
  });

  it("reports exact percentiles", async () => {
    const events = Array.from({ length: 100 }, (_, index) => eventReceived(index, index + 1));

    await postBatch(events);
    const response = await fetch(`${simulator.url}/_sim/latency`);

    expect(await response.json()).toEqual({ count: 100, p50: 50, p95: 95, p99: 99, max: 100 });
  });

  it("skips duplicates", async () => {
    await postBatch([eventReceived(1, 250)]);
    await postBatch([eventReceived(1, 250)]);

    expect(simulator.state.latency()).toEqual({ count: 1, p50: 250, p95: 250, p99: 250, max: 250 });
  });
});

describe("with recordEvents off", () => {
  beforeEach(async () => {
    simulator = await startSimulator({ port: 0, logger: silent, now: () => NOW, recordEvents: false });
  });

  it("keeps counts without bodies", async () => {
    const events = exampleEvents().slice(0, 20);

    await postBatch(events);
    await postBatch(events);

    expect(simulator.state.stats()).toMatchObject({ eventsAccepted: 20, duplicates: 20, persons: 0, companies: 0 });
    expect(simulator.state.events()).toEqual([]);
    expect(simulator.state.persons()).toEqual([]);
    expect(simulator.state.batches()[0].messageIds).toBeUndefined();
    expect(simulator.state.latency().count).toBe(20);
  });
});
