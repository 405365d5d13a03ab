import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { RedisKeys } from "../redis/keys.js";
import { EngageKeys } from "./keys.js";
import type { SyncKind } from "./sync-state.js";

/**
 * One audience or computed trait of one source, as `hydra-sync audiences` and GET
 * /v1/audiences list it. Times are UTC epoch milliseconds.
 */
export interface AudienceSummary {
  source: string;
  /** The snake_case key, the trait name Hydra receives, such as "trial_power_users". */
  audience: string;
  /** "audience" for audiences and journey steps, "computed_trait" for computed traits. */
  type: "audience" | "computed_trait";
  /** Engage's computation_id, when the events carried one. */
  computationId: string | null;
  /** Users in the audience now, or users with a value of the computed trait. */
  members: number;
  /** Users whose current value differs from the value last synced to Hydra. */
  pending: number;
  /** Users whose last event Hydra rejected; they are counted in `pending` too. */
  rejected: number;
  firstSeenAt: number;
  lastSync: { syncNumber: number; kind: SyncKind; startedAt: number; finishedAt: number; sent: number; failed: number } | null;
  /** A sync that is running, waiting for a retry, or failed after its last attempt; null otherwise. */
  currentSync: { syncNumber: number; state: "running" | "failed"; sent: number; failed: number; error: string | null } | null;
  /** Time of the next sync; null when none is scheduled. */
  nextSyncAt: number | null;
}

function numberOrNull(text: string | null | undefined): number | null {
  return text === null || text === undefined || text === "" ? null : Number(text);
}

/**
 * Lists every audience and computed trait of every configured source, sorted by source
 * and key. Costs one SMEMBERS and one pipeline per source, because the member and
 * pending counts come from a counter and HLEN, not from scanning members.
 */
export async function listAudiences(redis: Redis, config: Config): Promise<AudienceSummary[]> {
  const keys = new RedisKeys(config.redisPrefix);
  const summaries: AudienceSummary[] = [];

  for (const { name } of config.sources) {
    const source = new EngageKeys(keys, name);
    const audiences = (await redis.smembers(source.audiences())).sort();
    if (audiences.length === 0) continue;

    const pipeline = redis.pipeline();
    for (const audience of audiences) {
      pipeline.hgetall(source.meta(audience));
      pipeline.hlen(source.pending(audience));
      pipeline.hlen(source.errors(audience));
      pipeline.hgetall(source.syncProgress(audience));
      pipeline.zscore(source.schedule(), audience);
    }
    const replies = ((await pipeline.exec()) ?? []).map(([error, value]) => {
      if (error) throw error;
      return value;
    });

    audiences.forEach((audience, index) => {
      const [meta, pending, rejected, progress, nextSyncAt] = replies.slice(index * 5, index * 5 + 5) as [
        Record<string, string>,
        number,
        number,
        Record<string, string>,
        string | null,
      ];
      summaries.push(summarize(name, audience, meta, pending, rejected, progress, nextSyncAt));
    });
  }

  return summaries;
}

function summarize(
  source: string,
  audience: string,
  meta: Record<string, string>,
  pending: number,
  rejected: number,
  progress: Record<string, string>,
  nextSyncAt: string | null,
): AudienceSummary {
  let computationId: string | null = null;
  try {
    const personas = JSON.parse(meta.personas ?? "{}") as { computation_id?: unknown };
    if (typeof personas.computation_id === "string") computationId = personas.computation_id;
  } catch {
    computationId = null;
  }

  const lastSync =
    meta.lastSyncNumber === undefined
      ? null
      : {
          syncNumber: Number(meta.lastSyncNumber),
          kind: meta.lastSyncKind as SyncKind,
          startedAt: Number(meta.lastSyncStartedAt),
          finishedAt: Number(meta.lastSyncFinishedAt),
          sent: Number(meta.lastSyncSent ?? 0),
          failed: Number(meta.lastSyncFailed ?? 0),
        };

  let currentSync: AudienceSummary["currentSync"] = null;
  if (progress.state === "running" || progress.state === "failed") {
    currentSync = { syncNumber: Number(progress.number), state: progress.state, sent: Number(progress.sent ?? 0), failed: Number(progress.failed ?? 0), error: progress.error ?? null };
  }

  return {
    source,
    audience,
    type: meta.membership === "0" ? "computed_trait" : "audience",
    computationId,
    members: Number(meta.members ?? 0),
    pending,
    rejected,
    firstSeenAt: Number(meta.firstSeenAt),
    lastSync,
    currentSync,
    nextSyncAt: numberOrNull(nextSyncAt),
  };
}
