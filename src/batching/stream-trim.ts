import type { Redis } from "ioredis";

/** Compares two stream entry ids ("<ms>-<seq>") numerically. */
export function compareEntryIds(a: string, b: string): number {
  const [aMs, aSeq = 0n] = a.split("-").map(BigInt);
  const [bMs, bSeq = 0n] = b.split("-").map(BigInt);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  if (aSeq !== bSeq) return aSeq < bSeq ? -1 : 1;
  return 0;
}

/** Returns the smaller of two stream entry ids. */
export function minEntryId(a: string, b: string): string {
  return compareEntryIds(a, b) <= 0 ? a : b;
}

/**
 * Trims a stream read by a consumer group (a lane or an Engage stream) to STREAM_RETENTION without losing an entry the consumer group
 * still needs. XTRIM MAXLEN on Redis 7 deletes entries whatever their pending state, so
 * this trims with MINID below the oldest pending entry and below the group's
 * last-delivered id (entries after it were never read).
 *
 * Returns the number of entries removed.
 */
export async function trimConsumedStream(redis: Redis, stream: string, group: string, retentionMs: number, nowMs = Date.now()): Promise<number> {
  let threshold = `${Math.max(0, nowMs - retentionMs)}-0`;

  const groups = (await redis.xinfo("GROUPS", stream)) as unknown[][];
  const info = groups.map((fields) => toRecord(fields)).find((record) => record.name === group);
  if (!info) return 0;
  threshold = minEntryId(threshold, String(info["last-delivered-id"]));

  const summary = (await redis.xpending(stream, group)) as [number, string | null, string | null, unknown];
  if (summary[0] > 0 && summary[1]) threshold = minEntryId(threshold, summary[1]);

  return redis.xtrim(stream, "MINID", "~", threshold);
}

function toRecord(fields: unknown[]): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i += 2) record[String(fields[i])] = fields[i + 1];
  return record;
}
