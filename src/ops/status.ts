import { parseArgs } from "node:util";
import type { Redis } from "ioredis";

import { formatDurationMs } from "../config/duration.js";
import { loadConfig, type Config } from "../config/env.js";
import { listAudiences as listEngageAudiences } from "../engage/index.js";
import type { Logger } from "../logging/logger.js";
import { assertRedisReachable, createRedis } from "../redis/connection.js";
import { RedisKeys } from "../redis/keys.js";
import type { AudienceSummary, ListAudiences } from "./audiences.js";
import { EXIT, resolveIo, type CommandIo } from "./command-io.js";
import { readHeldSources, type HeldSource } from "./paused-sources.js";
import { COUNTED_JOB_STATES, openServiceQueues, readQueueCounts, type QueueCounts } from "./queues.js";
import { readStreams, type StreamState } from "./streams.js";

export const STATUS_USAGE = `Usage: hydra-sync status [--json] [--lanes N]

Prints one screen about the service: BullMQ job counts per queue, lane and Engage
streams (length, pending entries, lag), paused or rate-limited sources, the Engage
audiences due next, and the counters of the stats hash.

  --json      print the same as JSON
  --lanes N   show at most N busy lanes, busiest first; default 12
`;

/** Everything `hydra-sync status` shows. */
export interface StatusReport {
  generatedAt: string;
  redisPrefix: string;
  queues: QueueCounts[];
  streams: StreamState[];
  heldSources: HeldSource[];
  /** Null when no audience list was given to collectStatus. */
  audiences: AudienceSummary[] | null;
  /** Fields of the stats hash, as numbers. */
  counters: Record<string, number>;
}

export interface StatusOptions {
  listAudiences?: ListAudiences;
  logger?: Logger;
}

/** Reads the status report from Redis. */
export async function collectStatus(redis: Redis, config: Config, options: StatusOptions = {}): Promise<StatusReport> {
  const keys = new RedisKeys(config.redisPrefix);
  const queues = openServiceQueues(config, redis);
  try {
    const [queueCounts, streams, heldSources, stats, audiences] = await Promise.all([
      readQueueCounts(queues),
      readStreams(redis, config),
      readHeldSources(redis, config),
      redis.hgetall(keys.stats()),
      options.listAudiences ? options.listAudiences(redis, config) : Promise.resolve(null),
    ]);

    const counters = Object.fromEntries(
      Object.entries(stats)
        .map(([field, value]) => [field, Number(value)] as const)
        .sort(([a], [b]) => a.localeCompare(b)),
    );
    return { generatedAt: new Date().toISOString(), redisPrefix: config.redisPrefix, queues: queueCounts, streams, heldSources, audiences, counters };
  } finally {
    await Promise.all(queues.map((queue) => queue.close()));
  }
}

/** Formats rows as columns separated by two spaces; numbers are right-aligned. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((cell, index) => Math.max(cell.length, ...rows.map((row) => row[index].length)));
  // A column of numbers, with "-" or "?" where a value is missing, is right-aligned.
  const numeric = header.map(
    (_, index) => rows.some((row) => /^\d/.test(row[index])) && rows.every((row) => /^-?[\d.]+$|^-$|^\?$/.test(row[index])),
  );
  const line = (row: string[]) =>
    row
      .map((cell, index) => (numeric[index] && index > 0 ? cell.padStart(widths[index]) : cell.padEnd(widths[index])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function groupLag(group: StreamState["groups"][number] | undefined): string {
  if (!group) return "-";
  return group.lag === null ? "?" : String(group.lag);
}

/** Sum of pending entries and lag over a stream's groups, to rank busy streams. */
function backlogOf(stream: StreamState): number {
  return stream.groups.reduce((sum, group) => sum + group.pending + (group.lag ?? 0), 0);
}

function formatStreams(streams: StreamState[], maxLanes: number): string {
  const lanes = streams.filter((stream) => stream.kind === "lane");
  const busy = lanes
    .filter((stream) => stream.length > 0 || backlogOf(stream) > 0)
    .sort((a, b) => backlogOf(b) - backlogOf(a) || b.length - a.length || a.name.localeCompare(b.name));
  const shown = [...busy.slice(0, maxLanes), ...streams.filter((stream) => stream.kind === "engage")];

  const rows = shown.flatMap((stream) => {
    const groups = stream.groups.length > 0 ? stream.groups : [undefined];
    return groups.map((group) => [stream.name, String(stream.length), group?.name ?? "-", group ? String(group.pending) : "-", groupLag(group)]);
  });

  const hidden = busy.length - Math.min(busy.length, maxLanes);
  const empty = lanes.length - busy.length;
  const notes = [hidden > 0 ? `${hidden} more busy lanes not shown (use --lanes or --json)` : "", empty > 0 ? `${empty} of ${lanes.length} lanes are empty` : ""]
    .filter(Boolean)
    .join("; ");

  return `${table(["STREAM", "LENGTH", "GROUP", "PENDING", "LAG"], rows)}${notes ? `\n${notes}` : ""}`;
}

function formatHeld(held: HeldSource[]): string {
  if (held.length === 0) return "no source is paused or rate limited";
  const rows = held.map((entry) => [entry.source, entry.reason, entry.remainingMs === null ? "no expiry" : `${formatDurationMs(entry.remainingMs)} left`]);
  return table(["SOURCE", "STATE", "REMAINING"], rows);
}

function formatAudiences(audiences: AudienceSummary[] | null, nowMs: number): string {
  if (audiences === null) return "Engage audiences were not read";
  if (audiences.length === 0) return "no Engage audiences yet";

  const due = [...audiences].sort((a, b) => (a.nextSyncAt ?? Number.MAX_SAFE_INTEGER) - (b.nextSyncAt ?? Number.MAX_SAFE_INTEGER)).slice(0, 8);
  const rows = due.map((audience) => {
    let next = "not scheduled";
    if (audience.nextSyncAt !== null) {
      next = audience.nextSyncAt <= nowMs ? "due now" : `in ${formatDurationMs(audience.nextSyncAt - nowMs)}`;
    }
    return [audience.source, audience.audience, String(audience.pending), next];
  });
  return table(["SOURCE", "AUDIENCE", "PENDING", "NEXT SYNC"], rows);
}

function formatCounters(counters: Record<string, number>): string {
  const entries = Object.entries(counters);
  if (entries.length === 0) return "no counters yet";
  return entries.map(([name, value]) => `${name}=${value}`).join("  ");
}

/** Formats the report as the plain-text screen of `hydra-sync status`. */
export function formatStatus(report: StatusReport, maxLanes = 12): string {
  const nowMs = Date.parse(report.generatedAt);
  const queueRows = report.queues.map(({ queue, counts }) => [queue, ...COUNTED_JOB_STATES.map((state) => String(counts[state]))]);

  return [
    `hydra-sync status at ${report.generatedAt} (REDIS_PREFIX ${report.redisPrefix})`,
    "",
    table(["QUEUE", ...COUNTED_JOB_STATES.map((state) => state.toUpperCase())], queueRows),
    "",
    formatStreams(report.streams, maxLanes),
    "",
    formatHeld(report.heldSources),
    "",
    formatAudiences(report.audiences, nowMs),
    "",
    `counters: ${formatCounters(report.counters)}`,
    "",
  ].join("\n");
}

/**
 * Runs `hydra-sync status` with `argv` (the arguments after "status"). Returns the exit
 * code: 0 on success, 2 for an invalid command line.
 *
 * @throws ConfigError for invalid configuration and RedisUnavailableError when Redis
 * is unreachable; the CLI prints both.
 */
export async function runStatus(argv: string[], context: CommandIo & StatusOptions = {}): Promise<number> {
  const io = resolveIo(context);
  let values: { json: boolean; lanes?: string; help: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: { json: { type: "boolean", default: false }, lanes: { type: "string" }, help: { type: "boolean", short: "h", default: false } },
    }));
    if (values.lanes !== undefined && !/^\d+$/.test(values.lanes)) throw new Error(`Invalid --lanes ${JSON.stringify(values.lanes)}: use a whole number.`);
  } catch (error) {
    io.stderr.write(`hydra-sync status: ${(error as Error).message}\nRun "hydra-sync status --help" for the options.\n`);
    return EXIT.usage;
  }
  if (values.help) {
    io.stdout.write(STATUS_USAGE);
    return EXIT.ok;
  }

  const config = context.config ?? loadConfig(context.env ?? process.env);
  await assertRedisReachable(config.redisUrl);
  const redis = createRedis(config.redisUrl);
  try {
    const report = await collectStatus(redis, config, { ...context, listAudiences: context.listAudiences ?? listEngageAudiences });
    io.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report, values.lanes === undefined ? 12 : Number(values.lanes)));
    return EXIT.ok;
  } finally {
    await redis.quit();
  }
}
