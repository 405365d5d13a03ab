import { Job, type Queue } from "bullmq";
import type { Redis } from "ioredis";

import type { DeliveryJobData } from "../worker/job-data.js";

/** Selection of failed jobs for a listing or replay. Every given condition must match. */
export interface DeadLetterFilter {
  /** Earliest failure time (the job's finishedOn), epoch milliseconds. */
  sinceMs?: number;
  /** Latest failure time, epoch milliseconds; jobs failing after it are left alone. */
  untilMs: number;
  /** Error codes (such as "bad_request") or HTTP statuses (such as "400"); any may match. */
  statuses?: string[];
  /** Source names; any may match. */
  sources?: string[];
}

/** A failed job as listings show it, with what replaying it needs. */
export interface DeadLetter {
  id: string;
  /** Failure time (finishedOn), epoch milliseconds. */
  failedAt: number;
  /** Time the job was added, epoch milliseconds. */
  addedAt: number;
  attemptsMade: number;
  failedReason: string;
  source?: string;
  lane?: string;
  kind?: string;
  /** Events in the batch. */
  count?: number;
  /** Hydra's HTTP status, when Hydra responded. */
  status?: number;
  /** Error code, such as "bad_request" or "timeout". */
  code?: string;
  /** The job's hash fields, for Job.fromJSON. */
  fields: Record<string, string>;
}

/**
 * Job hash fields a listing reads. The stack traces are left out; `data` comes whole,
 * because Redis cannot read part of a field.
 */
const JOB_FIELDS = ["name", "data", "opts", "timestamp", "processedOn", "finishedOn", "failedReason", "atm", "ats", "attemptsMade"] as const;

type DeliveryDataView = Partial<Pick<DeliveryJobData, "source" | "lane" | "kind" | "count" | "rejection" | "deadLetter">>;

function toDeadLetter(id: string, values: (string | null)[]): DeadLetter | undefined {
  const fields: Record<string, string> = {};
  JOB_FIELDS.forEach((name, index) => {
    const value = values[index];
    if (value !== null && value !== undefined) fields[name] = value;
  });
  if (fields.data === undefined) return undefined;

  let data: DeliveryDataView = {};
  try {
    data = JSON.parse(fields.data) as DeliveryDataView;
  } catch {
    // A job of another shape still lists, with its failedReason only.
  }

  const rejection = data.deadLetter ?? data.rejection;
  return {
    id,
    failedAt: Number(fields.finishedOn ?? 0),
    addedAt: Number(fields.timestamp ?? 0),
    attemptsMade: Number(fields.atm ?? fields.attemptsMade ?? 0),
    failedReason: fields.failedReason ?? "",
    source: data.source,
    lane: data.lane,
    kind: data.kind,
    count: data.count,
    status: rejection?.status,
    code: rejection?.code,
    fields,
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Returns true when the dead letter's error matches `status`. An HTTP status number is
 * compared with Hydra's status, and an error code with the stored code, ignoring case.
 * Either is also searched as a whole word in failedReason.
 */
function matchesStatus(letter: DeadLetter, status: string): boolean {
  const word = new RegExp(`(^|[^A-Za-z0-9_])${escapeRegExp(status)}($|[^A-Za-z0-9_])`, "i");
  if (/^\d{3}$/.test(status) && letter.status === Number(status)) return true;
  if (letter.code !== undefined && letter.code.toLowerCase() === status.toLowerCase()) return true;
  return word.test(letter.failedReason);
}

export function matchesFilter(letter: DeadLetter, filter: DeadLetterFilter): boolean {
  if (filter.sinceMs !== undefined && letter.failedAt < filter.sinceMs) return false;
  if (letter.failedAt > filter.untilMs) return false;
  if (filter.sources?.length && !filter.sources.includes(letter.source ?? "")) return false;
  if (filter.statuses?.length && !filter.statuses.some((status) => matchesStatus(letter, status))) return false;
  return true;
}

/** Returns the queue's ioredis connection; BullMQ's own type lists only the commands BullMQ uses. */
async function clientOf(queue: Queue): Promise<Redis> {
  return (await queue.client) as unknown as Redis;
}

/** Reads failed jobs by id with one pipeline of HMGET; ids that are gone are left out. */
export async function readDeadLetters(queue: Queue, ids: string[]): Promise<DeadLetter[]> {
  if (ids.length === 0) return [];

  const client = await clientOf(queue);
  const pipeline = client.pipeline();
  for (const id of ids) pipeline.hmget(queue.toKey(id), ...JOB_FIELDS);
  const replies = (await pipeline.exec()) ?? [];

  const letters: DeadLetter[] = [];
  ids.forEach((id, index) => {
    const [error, values] = replies[index] ?? [];
    if (error) throw error;
    const letter = toDeadLetter(id, values as (string | null)[]);
    if (letter) letters.push(letter);
  });
  return letters;
}

/**
 * Pages through a queue's failed set in order of failure time, PAGE_SIZE jobs at a time,
 * so 100,000 dead letters never sit in memory at once. Jobs that leave the failed set
 * while the scan runs (replayed or removed) are skipped, not counted twice, and jobs
 * that fail after `filter.untilMs` are never reached.
 *
 * NOTE: each page reads whole job data, at most BATCH_MAX_BYTES of events a job, so a
 * page of 100 jobs can briefly hold up to 50 MiB.
 */
export class DeadLetterScan {
  /** Failed jobs in the time range when the scan started (ZCOUNT); later ones are not added. */
  total = 0;
  /** Failed jobs read so far, matching or not. */
  scanned = 0;

  constructor(
    private readonly queue: Queue,
    private readonly filter: DeadLetterFilter,
    private readonly pageSize = 100,
  ) {}

  /** Counts the failed jobs in the time range, for progress lines. */
  async count(): Promise<number> {
    const client = await clientOf(this.queue);
    this.total = await client.zcount(this.queue.toKey("failed"), this.filter.sinceMs ?? "-inf", this.filter.untilMs);
    return this.total;
  }

  /** Yields the matching dead letters of each page, in order of failure time. */
  async *pages(): AsyncGenerator<DeadLetter[]> {
    const client = await clientOf(this.queue);
    const failedKey = this.queue.toKey("failed");

    // The failed set is scored by failure time. Paging by score, not by index, survives
    // jobs leaving the set; ids already seen at the current score are skipped.
    let minScore: number | "-inf" = this.filter.sinceMs ?? "-inf";
    let seenAtMinScore = new Set<string>();

    for (;;) {
      const reply = await client.zrangebyscore(
        failedKey,
        minScore,
        this.filter.untilMs,
        "WITHSCORES",
        "LIMIT",
        0,
        this.pageSize + seenAtMinScore.size,
      );

      const page: { id: string; score: number }[] = [];
      for (let i = 0; i + 1 < reply.length && page.length < this.pageSize; i += 2) {
        const id = reply[i];
        const score = Number(reply[i + 1]);
        if (score === minScore && seenAtMinScore.has(id)) continue;
        page.push({ id, score });
      }
      if (page.length === 0) return;

      const lastScore = page[page.length - 1].score;
      if (lastScore !== minScore) seenAtMinScore = new Set();
      for (const entry of page) {
        if (entry.score === lastScore) seenAtMinScore.add(entry.id);
      }
      minScore = lastScore;

      const letters = await readDeadLetters(this.queue, page.map((entry) => entry.id));
      this.scanned += page.length;
      yield letters.filter((letter) => matchesFilter(letter, this.filter));
    }
  }
}

/** Outcome of replaying one dead letter. */
export type ReplayOutcome = "replayed" | "not_failed";

/**
 * Replays a dead letter with BullMQ's job.retry("failed"): the same job, with the same
 * jobId and data, goes back to waiting, so its events keep their messageIds.
 * attemptsMade is kept. The delivery worker finds data.deadLetter set, clears it and delivers again.
 *
 * Returns "not_failed" when the job left the failed state since it was read.
 */
export async function replayDeadLetter(queue: Queue, letter: DeadLetter): Promise<ReplayOutcome> {
  const job = Job.fromJSON(queue, letter.fields as never, letter.id);
  try {
    await job.retry("failed");
    return "replayed";
  } catch (error) {
    const state = await queue.getJobState(letter.id);
    if (state !== "failed") return "not_failed";
    throw error;
  }
}
