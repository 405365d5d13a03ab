import type { RedisKeys } from "../redis/keys.js";

/** Consumer group that the Engage service reads the Engage streams with. */
export const ENGAGE_GROUP = "engage";

/** BullMQ queue of sync jobs: one sync of one audience or computed trait each. */
export const ENGAGE_SYNC_QUEUE = "engage-sync";

/**
 * Redis keys of the Engage state of one source. Every key shares the hash tag of the
 * source's Engage stream, `{engage.<source>}`, so each Lua script of src/engage touches
 * a single Redis Cluster slot.
 *
 * Per source:
 * - `audiences` set: every audience and computed trait key seen.
 * - `schedule` sorted set: key to the time of its next sync, UTC epoch ms.
 * - `schedule-set-at` sorted set: key to the time its schedule entry was written, to
 *   notice a clock that jumped back.
 * - `sync-numbers` hash: key to the number of its last claimed sync.
 * - `jobs-to-add` hash: jobId to job data of claimed syncs not yet added to the queue.
 *
 * Per audience or computed trait (`aud:<key>:…`):
 * - `meta` hash: first-seen time, computation class, last `context.personas`, member
 *   count and the last completed sync.
 * - `current` hash: member (`u:<userId>` or `a:<anonymousId>`) to its current record,
 *   `<event timestamp ms>\t<email>\t<value JSON>`.
 * - `pending` hash: member to the value last synced to Hydra ("" for none), only for
 *   members whose current value differs from it.
 * - `errors` hash: member to the JSON of the last rejection by Hydra.
 * - `sync` hash: progress of the running or last sync.
 */
export class EngageKeys {
  readonly stream: string;
  private readonly base: string;

  constructor(
    keys: RedisKeys,
    readonly source: string,
  ) {
    this.stream = keys.engageStream(source);
    this.base = `${keys.prefix}:{${keys.engageTag(source)}}`;
  }

  audiences(): string {
    return `${this.base}:audiences`;
  }

  schedule(): string {
    return `${this.base}:schedule`;
  }

  scheduleSetAt(): string {
    return `${this.base}:schedule-set-at`;
  }

  syncNumbers(): string {
    return `${this.base}:sync-numbers`;
  }

  jobsToAdd(): string {
    return `${this.base}:jobs-to-add`;
  }

  meta(audience: string): string {
    return `${this.base}:aud:${audience}:meta`;
  }

  current(audience: string): string {
    return `${this.base}:aud:${audience}:current`;
  }

  pending(audience: string): string {
    return `${this.base}:aud:${audience}:pending`;
  }

  errors(audience: string): string {
    return `${this.base}:aud:${audience}:errors`;
  }

  syncProgress(audience: string): string {
    return `${this.base}:aud:${audience}:sync`;
  }

  /** Every key of one audience, for MEMORY USAGE and clean-up. */
  audienceKeys(audience: string): string[] {
    return [this.meta(audience), this.current(audience), this.pending(audience), this.errors(audience), this.syncProgress(audience)];
  }
}

/**
 * Returns the jobId of a sync: `<source>-<audience>-sync-<n>`. Source names hold only
 * letters, digits, '_' and '-', and audience keys are snake_case, so the id has no ':'
 * and is never digits only, as BullMQ requires.
 */
export function syncJobId(source: string, audience: string, syncNumber: number): string {
  return `${source}-${audience}-sync-${syncNumber}`;
}
