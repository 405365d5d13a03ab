import type { Redis } from "ioredis";

import { LaneBuffer, type Batch } from "../batching/lane-buffer.js";
import type { Config } from "../config/env.js";
import { RedisKeys } from "../redis/keys.js";
import { ENTRY_FIELD_EVENT, ENTRY_FIELD_USER } from "../types.js";
import { deliveryJobOptions, type DeliveryQueue } from "../worker/delivery-queue.js";
import { batchJobData } from "../worker/job-data.js";
import type { TimeRange } from "./time-range.js";
import { compareEntryIds } from "../batching/stream-trim.js";

export interface StreamReplayOptions extends TimeRange {
  /** Source names to replay; all configured sources when absent. */
  sources?: string[];
  /** Counts the batches without adding jobs. */
  dryRun?: boolean;
  /** Stream entries read with one XRANGE. @defaultValue 1000 */
  pageSize?: number;
  /** Called after each job is added (or counted, in a dry run). */
  onJob?: (progress: StreamReplayResult) => void;
}

/** A lane whose stream lost entries of the time range to trimming (STREAM_RETENTION) or XDEL. */
export interface StreamGap {
  lane: string;
  /** Oldest entry left in the stream; null when the stream has no entries left. */
  oldestEntryId: string | null;
}

export interface StreamReplayResult {
  lanes: number;
  /** Lanes read so far. */
  lanesDone: number;
  /** Jobs made from the range: added, already present, or counted in a dry run. */
  jobs: number;
  /** Jobs added to the queue. */
  added: number;
  /** Jobs whose jobId was already in the queue, from an earlier replay of the same range. */
  existing: number;
  events: number;
  /** Entries without the user or event field, left out. */
  malformed: number;
  gaps: StreamGap[];
}

/** Returns the jobId of a replay batch: `replay-<lane>-<first entry id>`, free of ':'. */
export function replayJobId(lane: string, firstEntryId: string): string {
  return `replay-${lane}-${firstEntryId}`;
}


function entryIdAfter(id: string): string {
  return `(${id}`;
}

/**
 * Adds "replay" delivery jobs for every event the producer stored in the lane streams
 * between `sinceMs` and `untilMs` (by stream entry id time), for when Hydra lost data.
 * Events keep their messageIds, so Hydra drops those it already has.
 *
 * Each lane is read in pages with XRANGE and cut into batches by BATCH_MAX_EVENTS and
 * BATCH_MAX_BYTES. The jobIds are deterministic, so running the same range twice adds
 * nothing while the first run's jobs are still in the queue.
 *
 * NOTE: replay jobs bypass the router's one-job-per-lane rule, so a replayed event can
 * reach Hydra after a newer event of the same user.
 */
export async function replayFromStream(
  redis: Redis,
  config: Config,
  queue: DeliveryQueue,
  options: StreamReplayOptions,
): Promise<StreamReplayResult> {
  const keys = new RedisKeys(config.redisPrefix);
  const pageSize = options.pageSize ?? 1_000;
  const sources = config.sources.filter((source) => !options.sources || options.sources.includes(source.name));

  const result: StreamReplayResult = {
    lanes: sources.length * config.partitions,
    lanesDone: 0,
    jobs: 0,
    added: 0,
    existing: 0,
    events: 0,
    malformed: 0,
    gaps: [],
  };

  const enqueue = async (source: string, lane: string, batch: Batch) => {
    const data = batchJobData(source, lane, "replay", batch);
    const jobId = replayJobId(lane, data.entryIds[0]);
    result.jobs++;
    result.events += data.count;

    if (!options.dryRun) {
      const exists = await redis.exists(queue.toKey(jobId));
      await queue.add("replay", data, deliveryJobOptions(config, jobId));
      if (exists) result.existing++;
      else result.added++;
    }
    options.onJob?.(result);
  };

  for (const source of sources) {
    for (let partition = 0; partition < config.partitions; partition++) {
      const lane = keys.laneId(source.name, partition);
      const stream = keys.laneStream(lane);
      const buffer = new LaneBuffer(config.maxBatchEvents, config.maxBatchBytes);

      const gap = await findGap(redis, stream, options.sinceMs);
      if (gap) result.gaps.push({ lane, oldestEntryId: gap.oldestEntryId });

      let start = `${options.sinceMs}-0`;
      const end = `${options.untilMs}-18446744073709551615`;
      for (;;) {
        const entries = await redis.xrange(stream, start, end, "COUNT", pageSize);
        for (const [id, fields] of entries) {
          const values = fieldMap(fields);
          const user = values.get(ENTRY_FIELD_USER);
          const event = values.get(ENTRY_FIELD_EVENT);
          if (user === undefined || event === undefined) {
            result.malformed++;
            continue;
          }
          buffer.push({ id, user, event, bytes: Buffer.byteLength(event) });
          while (buffer.isFull()) await enqueue(source.name, lane, buffer.takeBatch()!);
        }

        if (entries.length < pageSize) break;
        start = entryIdAfter(entries[entries.length - 1][0]);
      }

      for (let batch = buffer.takeBatch(); batch; batch = buffer.takeBatch()) {
        await enqueue(source.name, lane, batch);
      }
      result.lanesDone++;
    }
  }

  return result;
}

function fieldMap(fields: string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i], fields[i + 1]);
  return map;
}

/**
 * Finds out whether entries at or after `sinceMs` were removed from the stream, from
 * XINFO STREAM: entries-added exceeds the length when entries were trimmed or deleted,
 * and the removed ones are older than the first entry left. Returns undefined when
 * nothing of the range can be missing.
 *
 * NOTE: the check cannot tell whether the removed entries reached into the range, so
 * a stream trimmed only below `sinceMs` with no entries between `sinceMs` and its first
 * entry is reported as a gap too.
 */
async function findGap(redis: Redis, stream: string, sinceMs: number): Promise<Omit<StreamGap, "lane"> | undefined> {
  let reply: unknown[];
  try {
    reply = (await redis.xinfo("STREAM", stream)) as unknown[];
  } catch {
    // The stream does not exist: nothing was stored in this lane.
    return undefined;
  }

  const fields = new Map<string, unknown>();
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), reply[i + 1]);

  const length = Number(fields.get("length"));
  const added = Number(fields.get("entries-added"));
  const lastId = String(fields.get("last-generated-id"));
  const firstEntry = fields.get("first-entry") as [string, string[]] | null;
  const since = `${sinceMs}-0`;

  if (!(added > length)) return undefined;
  if (!firstEntry) return compareEntryIds(lastId, since) >= 0 ? { oldestEntryId: null } : undefined;
  return compareEntryIds(firstEntry[0], since) > 0 ? { oldestEntryId: firstEntry[0] } : undefined;
}
