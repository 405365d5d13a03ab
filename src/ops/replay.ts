import { parseArgs } from "node:util";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";

import { loadConfig, type Config } from "../config/env.js";
import { assertRedisReachable, createRedis } from "../redis/connection.js";
import { DELIVERY_QUEUE } from "../redis/keys.js";
import { createDeliveryQueue } from "../worker/delivery-queue.js";
import { EXIT, resolveIo, UsageError, type CommandIo, type ResolvedIo, type TextSink } from "./command-io.js";
import { DeadLetterScan, readDeadLetters, replayDeadLetter, matchesFilter, type DeadLetter, type DeadLetterFilter } from "./dead-letters.js";
import { openQueue, SERVICE_QUEUE_NAMES } from "./queues.js";
import { replayFromStream, type StreamReplayResult } from "./stream-replay.js";
import { InvalidTimeError, parseTime } from "./time-range.js";

export const REPLAY_USAGE = `Usage: hydra-sync replay [options]

Lists failed jobs (dead letters) of a queue, or replays them with BullMQ's job.retry:
the same job and jobId run again, so the events keep their messageIds.

Selecting failed jobs (every given filter must match):
  --queue NAME         queue to read (${SERVICE_QUEUE_NAMES.join(" or ")}); default ${DELIVERY_QUEUE}
  --status CODE        error code (bad_request, unauthorized, timeout, ...) or Hydra's HTTP
                       status (400); repeat the option or separate values with commas
  --source NAME        source name; repeat or separate with commas
  --since TIME         failed at or after TIME: ISO 8601 (2025-03-11T14:00:00Z) or "2h ago"
  --until TIME         failed at or before TIME; default now
  --limit N            stop after N matching jobs

Actions (without one, the matching jobs are listed):
  --job ID [ID ...]    replay these failed jobs
  --all                replay every matching failed job
  --dry-run            list what --job or --all would replay, and change nothing

Replaying from the lane streams (for when Hydra lost data it had accepted):
  --from-stream        add "replay" jobs for the events stored between --since and --until
                       (required with it; --until defaults to now); --source narrows it

Output:
  --json               list jobs as JSON lines instead of a table
  --progress-every N   print a progress line to stderr every N jobs; default 1000
  --page-size N        failed jobs read from Redis at a time; default 100
`;

interface ReplayArguments {
  queue: string;
  statuses: string[];
  sources: string[];
  sinceMs?: number;
  untilMs: number;
  limit: number;
  jobIds: string[];
  all: boolean;
  dryRun: boolean;
  fromStream: boolean;
  json: boolean;
  progressEvery: number;
  pageSize: number;
}

function listOption(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((value) => value.split(",")).map((value) => value.trim()).filter(Boolean);
}

function positiveInteger(option: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`Invalid ${option} ${JSON.stringify(text)}: use a whole number of at least 1.`);
  return Number(text);
}

/** Parses and checks the replay command line. @throws UsageError or InvalidTimeError. */
export function parseReplayArguments(argv: string[], nowMs: number): ReplayArguments {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      queue: { type: "string" },
      status: { type: "string", multiple: true },
      source: { type: "string", multiple: true },
      since: { type: "string" },
      until: { type: "string" },
      limit: { type: "string" },
      job: { type: "string", multiple: true },
      all: { type: "boolean", default: false },
      "dry-run": { type: "boolean", default: false },
      "from-stream": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "progress-every": { type: "string" },
      "page-size": { type: "string" },
    },
  });

  const jobIds = listOption(values.job);
  if (positionals.length > 0 && jobIds.length === 0) {
    throw new UsageError(`Unexpected argument ${JSON.stringify(positionals[0])}: give job ids after --job.`);
  }
  jobIds.push(...positionals);

  const parsed: ReplayArguments = {
    queue: values.queue ?? DELIVERY_QUEUE,
    statuses: listOption(values.status),
    sources: listOption(values.source),
    sinceMs: values.since === undefined ? undefined : parseTime("--since", values.since, nowMs),
    // A replayed job that fails again gets a failure time after now, so the scan never reaches it twice.
    untilMs: values.until === undefined ? nowMs : Math.min(nowMs, parseTime("--until", values.until, nowMs)),
    limit: positiveInteger("--limit", values.limit, Number.POSITIVE_INFINITY),
    jobIds,
    all: values.all,
    dryRun: values["dry-run"],
    fromStream: values["from-stream"],
    json: values.json,
    progressEvery: positiveInteger("--progress-every", values["progress-every"], 1_000),
    pageSize: positiveInteger("--page-size", values["page-size"], 100),
  };

  if (!(SERVICE_QUEUE_NAMES as readonly string[]).includes(parsed.queue)) {
    throw new UsageError(`Unknown --queue ${JSON.stringify(parsed.queue)}: use ${SERVICE_QUEUE_NAMES.join(" or ")}.`);
  }
  if (parsed.sinceMs !== undefined && parsed.sinceMs > parsed.untilMs) {
    throw new UsageError("--since is later than --until: give the earlier time to --since.");
  }
  if (parsed.all && parsed.jobIds.length > 0) {
    throw new UsageError("--all and --job exclude each other: give one of them.");
  }
  if (parsed.fromStream) {
    if (parsed.sinceMs === undefined) throw new UsageError("--from-stream needs --since: give the start of the time range to replay.");
    if (parsed.jobIds.length > 0 || parsed.all || parsed.statuses.length > 0 || values.queue !== undefined) {
      throw new UsageError("--from-stream reads the lane streams, so --job, --all, --status and --queue do not apply; use --since, --until and --source.");
    }
  }
  return parsed;
}

function isoTime(ms: number): string {
  return Number.isFinite(ms) && ms > 0 ? new Date(ms).toISOString() : "-";
}

function truncate(text: string, width: number): string {
  const oneLine = text.replace(/\s+/g, " ");
  return oneLine.length <= width ? oneLine : `${oneLine.slice(0, width - 1)}…`;
}

const TABLE_COLUMNS: [string, number][] = [
  ["JOB ID", 40],
  ["FAILED AT", 24],
  ["SOURCE", 12],
  ["LANE", 14],
  ["KIND", 8],
  ["EVENTS", 6],
  ["ATTEMPTS", 8],
];

function tableRow(cells: string[]): string {
  const fixed = TABLE_COLUMNS.map(([, width], index) => cells[index].padEnd(width)).join(" ");
  return `${fixed} ${cells[TABLE_COLUMNS.length]}\n`;
}

function writeHeader(out: TextSink, args: ReplayArguments): void {
  if (!args.json) out.write(tableRow([...TABLE_COLUMNS.map(([name]) => name), "ERROR"]));
}

function writeLetter(out: TextSink, args: ReplayArguments, letter: DeadLetter): void {
  if (args.json) {
    const { fields: _fields, ...shown } = letter;
    out.write(`${JSON.stringify({ ...shown, failedAt: isoTime(letter.failedAt), addedAt: isoTime(letter.addedAt) })}\n`);
    return;
  }
  out.write(
    tableRow([
      truncate(letter.id, 40),
      isoTime(letter.failedAt),
      truncate(letter.source ?? "-", 12),
      truncate(letter.lane ?? "-", 14),
      letter.kind ?? "-",
      String(letter.count ?? "-"),
      String(letter.attemptsMade),
      truncate(letter.failedReason, 100),
    ]),
  );
}

/** Yields pages of the selected dead letters: the given job ids, or a scan of the failed set. */
async function* selectDeadLetters(queue: Queue, args: ReplayArguments, scan: DeadLetterScan, io: ResolvedIo): AsyncGenerator<DeadLetter[]> {
  const filter = scanFilter(args);
  if (args.jobIds.length === 0) {
    yield* scan.pages();
    return;
  }

  for (let start = 0; start < args.jobIds.length; start += args.pageSize) {
    const ids = args.jobIds.slice(start, start + args.pageSize);
    const client = (await queue.client) as unknown as Redis;
    const scores = await Promise.all(ids.map((id) => client.zscore(queue.toKey("failed"), id)));
    const failedIds = ids.filter((id, index) => {
      if (scores[index] === null) io.stderr.write(`job ${id} is not a failed job of ${queue.name}; skipping it\n`);
      return scores[index] !== null;
    });

    const letters = await readDeadLetters(queue, failedIds);
    scan.scanned += ids.length;
    yield letters.filter((letter) => matchesFilter(letter, filter));
  }
}

function scanFilter(args: ReplayArguments): DeadLetterFilter {
  return {
    sinceMs: args.sinceMs,
    untilMs: args.untilMs,
    statuses: args.statuses.length > 0 ? args.statuses : undefined,
    sources: args.sources.length > 0 ? args.sources : undefined,
  };
}

/** Lists or replays dead letters; returns the exit code. */
async function replayDeadLetters(redis: Redis, config: Config, args: ReplayArguments, io: ResolvedIo): Promise<number> {
  const queue = openQueue(config, redis, args.queue);
  try {
    const scan = new DeadLetterScan(queue, scanFilter(args), args.pageSize);
    const total = args.jobIds.length > 0 ? args.jobIds.length : await scan.count();
    const replaying = (args.all || args.jobIds.length > 0) && !args.dryRun;
    const filtered = args.statuses.length > 0 || args.sources.length > 0;

    let matched = 0;
    let events = 0;
    let replayed = 0;
    let notFailed = 0;
    let nextProgress = args.progressEvery;

    if (!replaying) writeHeader(io.stdout, args);

    for await (const page of selectDeadLetters(queue, args, scan, io)) {
      const selected = page.slice(0, Math.max(0, args.limit - matched));
      matched += selected.length;
      events += selected.reduce((sum, letter) => sum + (letter.count ?? 0), 0);

      if (replaying) {
        const outcomes = await Promise.all(selected.map((letter) => replayDeadLetter(queue, letter)));
        replayed += outcomes.filter((outcome) => outcome === "replayed").length;
        notFailed += outcomes.filter((outcome) => outcome === "not_failed").length;
      } else {
        for (const letter of selected) writeLetter(io.stdout, args, letter);
      }

      while (scan.scanned >= nextProgress) {
        const done = replaying ? `replayed ${replayed}` : `matched ${matched}`;
        io.stderr.write(filtered || !replaying ? `${done} jobs, scanned ${scan.scanned}/${total} failed jobs\n` : `${done}/${total} jobs\n`);
        nextProgress += args.progressEvery;
      }
      if (matched >= args.limit) break;
    }

    if (replaying) {
      const skipped = notFailed > 0 ? `; ${notFailed} left the failed state before their turn and were skipped` : "";
      io.stdout.write(`replayed ${replayed} jobs (${events} events) of ${queue.name}${skipped}\n`);
    } else if (args.all || args.jobIds.length > 0) {
      io.stdout.write(`dry run: would replay ${matched} jobs (${events} events) of ${queue.name}\n`);
    } else {
      io.stdout.write(`${matched} failed jobs (${events} events) of ${queue.name} match; replay them with --all, or some with --job ID\n`);
    }
    return EXIT.ok;
  } finally {
    await queue.close();
  }
}

function streamProgressLine(progress: StreamReplayResult, dryRun: boolean): string {
  const verb = dryRun ? "would add" : "added";
  return `${verb} ${progress.jobs} replay jobs (${progress.events} events), ${progress.lanesDone}/${progress.lanes} lanes read\n`;
}

/** Adds "replay" jobs from the lane streams; returns the exit code. */
async function replayStreams(redis: Redis, config: Config, args: ReplayArguments, io: ResolvedIo): Promise<number> {
  const unknown = args.sources.filter((name) => !config.sources.some((source) => source.name === name));
  if (unknown.length > 0) throw new UsageError(`Unknown --source ${unknown.join(", ")}: use a source name from the configuration.`);

  const queue = createDeliveryQueue(config, redis);
  try {
    let nextProgress = args.progressEvery;
    const result = await replayFromStream(redis, config, queue, {
      sinceMs: args.sinceMs!,
      untilMs: args.untilMs,
      sources: args.sources.length > 0 ? args.sources : undefined,
      dryRun: args.dryRun,
      onJob: (progress) => {
        if (progress.jobs < nextProgress) return;
        io.stderr.write(streamProgressLine(progress, args.dryRun));
        nextProgress += args.progressEvery;
      },
    });

    for (const { lane, oldestEntryId } of result.gaps) {
      const lost = oldestEntryId ? `entries before ${oldestEntryId} were` : "every entry was";
      io.stderr.write(`lane ${lane}: ${lost} trimmed (STREAM_RETENTION) or deleted, so events of the range stored before it may be missing\n`);
    }
    if (result.malformed > 0) io.stderr.write(`${result.malformed} stream entries had no user or event field and were left out\n`);

    const range = `${isoTime(args.sinceMs!)} to ${isoTime(args.untilMs)}`;
    if (args.dryRun) {
      io.stdout.write(`dry run: would add ${result.jobs} replay jobs (${result.events} events) from ${result.lanes} lanes, ${range}\n`);
    } else {
      const existing = result.existing > 0 ? `; ${result.existing} were already queued by an earlier replay` : "";
      io.stdout.write(`added ${result.added} replay jobs (${result.events} events) from ${result.lanes} lanes, ${range}${existing}\n`);
    }
    return EXIT.ok;
  } finally {
    await queue.close();
  }
}

/**
 * Runs `hydra-sync replay` with `argv` (the arguments after "replay"). Returns the exit
 * code: 0 on success, 2 for an invalid command line.
 *
 * @throws ConfigError for invalid configuration and RedisUnavailableError when Redis
 * is unreachable; the CLI prints both.
 */
export async function runReplay(argv: string[], context: CommandIo = {}): Promise<number> {
  const io = resolveIo(context);
  let args: ReplayArguments;
  try {
    if (argv.includes("--help") || argv.includes("-h")) {
      io.stdout.write(REPLAY_USAGE);
      return EXIT.ok;
    }
    args = parseReplayArguments(argv, Date.now());
  } catch (error) {
    if (error instanceof UsageError || error instanceof InvalidTimeError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.stderr.write(`hydra-sync replay: ${(error as Error).message}\nRun "hydra-sync replay --help" for the options.\n`);
      return EXIT.usage;
    }
    throw error;
  }

  const config = context.config ?? loadConfig(context.env ?? process.env);
  await assertRedisReachable(config.redisUrl);
  const redis = createRedis(config.redisUrl);
  try {
    return args.fromStream ? await replayStreams(redis, config, args, io) : await replayDeadLetters(redis, config, args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`hydra-sync replay: ${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  } finally {
    await redis.quit();
  }
}
