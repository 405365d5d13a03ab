import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import type { Config } from "../src/config/env.js";
import { UsageError } from "../src/ops/command-io.js";
import { openQueue } from "../src/ops/queues.js";
import { parseReplayArguments, runReplay } from "../src/ops/replay.js";
import { replayFromStream } from "../src/ops/stream-replay.js";
import { InvalidTimeError, parseTime } from "../src/ops/time-range.js";
import { DELIVERY_QUEUE, RedisKeys } from "../src/redis/keys.js";
import { createDeliveryQueue } from "../src/worker/delivery-queue.js";
import type { DeliveryJobData } from "../src/worker/job-data.js";
import { testConfig } from "./support/config.js";
import { deletePrefix, testRedis } from "./support/redis.js";
import { deliveryData, makeDeadLetters, TextCapture, type DeadLetterSpec } from "./ops-support.js";

const NOW = Date.parse("2025-03-11T15:00:00.000Z");

describe("parseTime", () => {
  it.each([
    ["now", NOW],
    ["2h ago", NOW - 7_200_000],
    ["90m", NOW - 5_400_000],
    ["1.5h ago", NOW - 5_400_000],
    ["2025-03-11T14:00:00Z", Date.parse("2025-03-11T14:00:00Z")],
    ["2025-03-11T10:00:00-04:00", Date.parse("2025-03-11T14:00:00Z")],
    ["2025-03-11", Date.parse("2025-03-11T00:00:00Z")],
  ])("reads %s", (text, expected) => {
    expect(parseTime("--since", text, NOW)).toBe(expected);
  });

  it.each(["5000", "yesterday", "2h later", ""])("rejects %j", (text) => {
    expect(() => parseTime("--since", text, NOW)).toThrow(InvalidTimeError);
  });

  it("names the option in the error", () => {
    expect(() => parseTime("--until", "soon", NOW)).toThrow(/^Invalid --until "soon": use an ISO 8601 time/);
  });
});

describe("parseReplayArguments", () => {
  it("defaults to listing the delivery queue", () => {
    const args = parseReplayArguments([], NOW);
    expect(args).toEqual({
      queue: DELIVERY_QUEUE,
      statuses: [],
      sources: [],
      sinceMs: undefined,
      untilMs: NOW,
      limit: Number.POSITIVE_INFINITY,
      jobIds: [],
      all: false,
      dryRun: false,
      fromStream: false,
      json: false,
      progressEvery: 1_000,
      pageSize: 100,
    });
  });

  it("takes job ids after --job", () => {
    expect(parseReplayArguments(["--job", "a", "b", "--job", "c,d"], NOW).jobIds).toEqual(["a", "c", "d", "b"]);
  });

  it("splits repeated lists on commas", () => {
    const args = parseReplayArguments(["--status", "bad_request,400", "--status", "timeout", "--source", "web, ios"], NOW);
    expect(args.statuses).toEqual(["bad_request", "400", "timeout"]);
    expect(args.sources).toEqual(["web", "ios"]);
  });

  it("caps --until at now", () => {
    expect(parseReplayArguments(["--until", "2030-01-01T00:00:00Z"], NOW).untilMs).toBe(NOW);
  });

  it.each([
    [["stray"], 'Unexpected argument "stray": give job ids after --job.'],
    [["--all", "--job", "a"], "--all and --job exclude each other: give one of them."],
    [["--from-stream"], "--from-stream needs --since: give the start of the time range to replay."],
    [["--from-stream", "--since", "1h", "--status", "400"], "--from-stream reads the lane streams, so --job, --all, --status and --queue do not apply; use --since, --until and --source."],
    [["--queue", "emails"], 'Unknown --queue "emails": use hydra-delivery or engage-sync.'],
    [["--since", "1h", "--until", "2h"], "--since is later than --until: give the earlier time to --since."],
    [["--limit", "0"], 'Invalid --limit "0": use a whole number of at least 1.'],
  ])("rejects %j", (argv, message) => {
    expect(() => parseReplayArguments(argv, NOW)).toThrow(UsageError);
    expect(() => parseReplayArguments(argv, NOW)).toThrow(message);
  });
});

let config: Config;
let redis: Redis;

async function replay(argv: string[]): Promise<{ code: number; stdout: TextCapture; stderr: TextCapture }> {
  const stdout = new TextCapture();
  const stderr = new TextCapture();
  const code = await runReplay(argv, { stdout, stderr, config });
  return { code, stdout, stderr };
}

async function stateOf(jobId: string): Promise<string> {
  const queue = openQueue(config, redis, DELIVERY_QUEUE);
  try {
    return await queue.getJobState(jobId);
  } finally {
    await queue.close();
  }
}

async function failedCount(): Promise<number> {
  const queue = openQueue(config, redis, DELIVERY_QUEUE);
  try {
    return await queue.getFailedCount();
  } finally {
    await queue.close();
  }
}

afterEach(async () => {
  if (!redis) return;
  await deletePrefix(redis, config.redisPrefix);
  redis.disconnect();
});

describe("replay of dead letters", () => {
  const specs: DeadLetterSpec[] = [
    { id: "default.p0-100-0", data: deliveryData("default", "default.p0", 2), rejection: { code: "bad_request", status: 400, error: "properties.eventFlag is invalid" } },
    { id: "billing.p1-200-0", data: deliveryData("billing", "billing.p1", 3), rejection: { code: "timeout", error: "no response within 10000 ms" } },
    { id: "default.p1-300-0", data: deliveryData("default", "default.p1", 1), rejection: { code: "unauthorized", status: 401, error: "invalid API key" } },
  ];

  beforeEach(async () => {
    config = testConfig();
    redis = testRedis();
    await makeDeadLetters(config, redis, specs);
  });

  async function listedIds(argv: string[]): Promise<string[]> {
    const { stdout } = await replay([...argv, "--json"]);
    return stdout
      .lines()
      .filter((line) => line.startsWith("{"))
      .map((line) => (JSON.parse(line) as { id: string }).id)
      .sort();
  }

  it("lists every failed job", async () => {
    const { code, stdout, stderr } = await replay([]);

    expect(code).toBe(0);
    expect(stderr.text).toBe("");
    const lines = stdout.lines();
    expect(lines[0].split(/\s+/).slice(0, 3)).toEqual(["JOB", "ID", "FAILED"]);
    expect(lines.slice(1, 4).map((line) => line.split(" ")[0]).sort()).toEqual(["billing.p1-200-0", "default.p0-100-0", "default.p1-300-0"]);
    expect(lines.find((line) => line.startsWith("billing.p1-200-0"))).toMatch(/ billing +billing\.p1 +batch +3 +1 +timeout: no response within 10000 ms$/);
    expect(lines[4]).toBe("3 failed jobs (6 events) of hydra-delivery match; replay them with --all, or some with --job ID");
  });

  it("lists JSON lines", async () => {
    const { stdout } = await replay(["--json", "--status", "400"]);
    const [line] = stdout.lines();
    const listed = JSON.parse(line) as Record<string, unknown>;

    expect(listed.id).toBe("default.p0-100-0");
    expect(listed.source).toBe("default");
    expect(listed.lane).toBe("default.p0");
    expect(listed.kind).toBe("batch");
    expect(listed.count).toBe(2);
    expect(listed.attemptsMade).toBe(1);
    expect(listed.status).toBe(400);
    expect(listed.code).toBe("bad_request");
    expect(listed.failedReason).toBe("bad_request (400): properties.eventFlag is invalid");
    expect(listed.fields).toBeUndefined();
  });

  it.each([
    [["--status", "400"], ["default.p0-100-0"]],
    [["--status", "timeout"], ["billing.p1-200-0"]],
    [["--status", "BAD_REQUEST,401"], ["default.p0-100-0", "default.p1-300-0"]],
    [["--status", "500"], []],
    [["--source", "billing"], ["billing.p1-200-0"]],
    [["--source", "default", "--status", "unauthorized"], ["default.p1-300-0"]],
    [["--since", "1h ago"], ["billing.p1-200-0", "default.p0-100-0", "default.p1-300-0"]],
    [["--until", "1h ago"], []],
    [["--limit", "2"], null],
  ])("filters with %j", async (argv, expected) => {
    const ids = await listedIds(argv as string[]);
    if (expected === null) expect(ids.length).toBe(2);
    else expect(ids).toEqual(expected);
  });

  it("changes nothing in a dry run", async () => {
    const { code, stdout } = await replay(["--all", "--dry-run"]);

    expect(code).toBe(0);
    expect(stdout.lines().at(-1)).toBe("dry run: would replay 3 jobs (6 events) of hydra-delivery");
    expect(await failedCount()).toBe(3);
  });

  it("replays the matching jobs with the same id and data", async () => {
    const { code, stdout } = await replay(["--all", "--status", "401"]);

    expect(code).toBe(0);
    expect(stdout.text).toBe("replayed 1 jobs (1 events) of hydra-delivery\n");
    expect(await stateOf("default.p1-300-0")).toBe("waiting");
    expect(await stateOf("default.p0-100-0")).toBe("failed");
    expect(await stateOf("billing.p1-200-0")).toBe("failed");

    const queue = createDeliveryQueue(config, redis);
    const job = await queue.getJob("default.p1-300-0");
    await queue.close();
    expect(job!.data.events).toEqual(specs[2].data.events);
    expect(job!.data.deadLetter?.code).toBe("unauthorized");
    expect(job!.attemptsMade).toBe(1);
    expect(job!.failedReason).toBeFalsy();
  });

  it("replays the given job ids", async () => {
    const { code, stdout, stderr } = await replay(["--job", "billing.p1-200-0", "missing-job"]);

    expect(code).toBe(0);
    expect(stderr.text).toBe("job missing-job is not a failed job of hydra-delivery; skipping it\n");
    expect(stdout.text).toBe("replayed 1 jobs (3 events) of hydra-delivery\n");
    expect(await stateOf("billing.p1-200-0")).toBe("waiting");
    expect(await failedCount()).toBe(2);
  });

  it("rejects a bad command line with exit code 2", async () => {
    const { code, stderr } = await replay(["--since", "tomorrow"]);

    expect(code).toBe(2);
    expect(stderr.lines()[0]).toMatch(/^hydra-sync replay: Invalid --since "tomorrow"/);
  });
});

describe("replay of many dead letters", () => {
  beforeEach(async () => {
    config = testConfig();
    redis = testRedis();
    // Concurrent failures share finishedOn milliseconds, so the pages cross ties in the failed set.
    const specs: DeadLetterSpec[] = Array.from({ length: 120 }, (_, index) => ({
      id: `default.p0-${1_000 + index}-0`,
      data: deliveryData("default", "default.p0", 2, 1_000 + index),
      rejection: index % 2 === 0 ? { code: "timeout", error: "no response" } : { code: "bad_request", status: 400, error: "invalid" },
    }));
    await makeDeadLetters(config, redis, specs);
  });

  it("pages through all of them with progress", async () => {
    const { code, stdout, stderr } = await replay(["--all", "--page-size", "7", "--progress-every", "50"]);

    expect(code).toBe(0);
    expect(stderr.lines()).toEqual(["replayed 56/120 jobs", "replayed 105/120 jobs"]);
    expect(stdout.text).toBe("replayed 120 jobs (240 events) of hydra-delivery\n");
    expect(await failedCount()).toBe(0);
  });

  it("skips the jobs a filter leaves", async () => {
    const { stdout, stderr } = await replay(["--all", "--status", "timeout", "--page-size", "7", "--progress-every", "60"]);

    expect(stderr.lines()).toEqual(["replayed 32 jobs, scanned 63/120 failed jobs", "replayed 60 jobs, scanned 120/120 failed jobs"]);
    expect(stdout.text).toBe("replayed 60 jobs (120 events) of hydra-delivery\n");
    expect(await failedCount()).toBe(60);
  });

  it("stops at --limit", async () => {
    const { stdout } = await replay(["--all", "--limit", "25", "--page-size", "10"]);

    expect(stdout.text).toBe("replayed 25 jobs (50 events) of hydra-delivery\n");
    expect(await failedCount()).toBe(95);
  });
});

describe("replay from the streams", () => {
  let keys: RedisKeys;
  const iso = (ms: number) => new Date(ms).toISOString();
  const event = (id: string) => JSON.stringify({ type: "track", event: "Report Viewed", userId: `usr_${id}`, messageId: `msg-${id}` });

  beforeEach(async () => {
    config = testConfig({ PARTITIONS: "2", BATCH_MAX_EVENTS: "3" });
    redis = testRedis();
    keys = new RedisKeys(config.redisPrefix);

    for (const id of ["1000-0", "1001-0", "1002-0", "1003-0", "1004-0"]) {
      await redis.xadd(keys.laneStream("default.p0"), id, "u", `usr_${id}`, "e", event(id));
    }
    for (const id of ["1001-0", "3000-0"]) {
      await redis.xadd(keys.laneStream("default.p1"), id, "u", `usr_${id}`, "e", event(id));
    }
  });

  async function jobData(jobId: string): Promise<DeliveryJobData | undefined> {
    const queue = createDeliveryQueue(config, redis);
    try {
      return (await queue.getJob(jobId))?.data;
    } finally {
      await queue.close();
    }
  }

  it("adds replay jobs for the time range", async () => {
    const { code, stdout, stderr } = await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000)]);

    expect(code).toBe(0);
    expect(stderr.text).toBe("");
    expect(stdout.text).toBe("added 3 replay jobs (6 events) from 2 lanes, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z\n");

    const first = await jobData("replay-default.p0-1000-0");
    const events = ["1000-0", "1001-0", "1002-0"].map(event);
    expect(first).toEqual({
      source: "default",
      lane: "default.p0",
      kind: "replay",
      entryIds: ["1000-0", "1001-0", "1002-0"],
      users: ["usr_1000-0", "usr_1001-0", "usr_1002-0"],
      events,
      count: 3,
      bytes: 64 + events.reduce((sum, text) => sum + Buffer.byteLength(text), 0) + 2,
    });
    expect((await jobData("replay-default.p0-1003-0"))?.entryIds).toEqual(["1003-0", "1004-0"]);
    expect((await jobData("replay-default.p1-1001-0"))?.entryIds).toEqual(["1001-0"]);
    expect(await jobData("replay-default.p1-3000-0")).toBeUndefined();
  });

  it("adds nothing twice", async () => {
    await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000)]);
    const { stdout } = await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000)]);

    expect(stdout.text).toBe(
      "added 0 replay jobs (6 events) from 2 lanes, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z; 3 were already queued by an earlier replay\n",
    );
  });

  it("adds nothing in a dry run", async () => {
    const { stdout } = await replay(["--from-stream", "--dry-run", "--since", iso(1_000), "--until", iso(2_000)]);

    expect(stdout.text).toBe("dry run: would add 3 replay jobs (6 events) from 2 lanes, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z\n");
    expect(await jobData("replay-default.p0-1000-0")).toBeUndefined();
  });

  it("prints progress lines", async () => {
    const { stderr } = await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000), "--progress-every", "2"]);
    expect(stderr.lines()).toEqual(["added 2 replay jobs (5 events), 0/2 lanes read"]);
  });

  it("ignores entries trimmed before the range", async () => {
    await redis.xtrim(keys.laneStream("default.p0"), "MINID", "1002-0");
    const { stdout, stderr } = await replay(["--from-stream", "--since", iso(1_002), "--until", iso(2_000)]);

    expect(stderr.text).toBe("");
    expect(stdout.text).toBe("added 1 replay jobs (3 events) from 2 lanes, 1970-01-01T00:00:01.002Z to 1970-01-01T00:00:02.000Z\n");
  });

  it("warns about trimmed entries", async () => {
    await redis.xtrim(keys.laneStream("default.p0"), "MINID", "1002-0");
    const { stdout, stderr } = await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000)]);

    expect(stderr.text).toBe(
      "lane default.p0: entries before 1002-0 were trimmed (STREAM_RETENTION) or deleted, so events of the range stored before it may be missing\n",
    );
    expect(stdout.text).toBe("added 2 replay jobs (4 events) from 2 lanes, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z\n");
  });

  it("skips malformed entries", async () => {
    await redis.xadd(keys.laneStream("default.p0"), "1500-0", "u", "usr_x");
    const { stdout, stderr } = await replay(["--from-stream", "--since", iso(1_000), "--until", iso(2_000)]);

    expect(stderr.text).toBe("1 stream entries had no user or event field and were left out\n");
    expect(stdout.text).toBe("added 3 replay jobs (6 events) from 2 lanes, 1970-01-01T00:00:01.000Z to 1970-01-01T00:00:02.000Z\n");
  });

  it("rejects an unknown source", async () => {
    const { code, stderr } = await replay(["--from-stream", "--since", iso(1_000), "--source", "ios"]);

    expect(code).toBe(2);
    expect(stderr.text).toBe("hydra-sync replay: Unknown --source ios: use a source name from the configuration.\n");
  });

  it("reads a lane in pages", async () => {
    const queue = createDeliveryQueue(config, redis);
    const result = await replayFromStream(redis, config, queue, { sinceMs: 1_000, untilMs: 5_000, pageSize: 2 });
    await queue.close();

    expect(result).toEqual({ lanes: 2, lanesDone: 2, jobs: 3, added: 3, existing: 0, events: 7, malformed: 0, gaps: [] });
    expect((await jobData("replay-default.p0-1003-0"))?.entryIds).toEqual(["1003-0", "1004-0"]);
    expect((await jobData("replay-default.p1-1001-0"))?.entryIds).toEqual(["1001-0", "3000-0"]);
  });
});
