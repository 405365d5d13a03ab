import type { Redis } from "ioredis";

import type { EngageKeys } from "./keys.js";
import { LuaScript, RECORD_LUA } from "./lua-script.js";

/** Whether a sync is an audience's first (every current member) or a later one (changes only). */
export type SyncKind = "initial" | "delta";

/** State of a sync when its job starts an attempt. */
export interface SyncStart {
  /**
   * "new": nothing of this sync ran yet. "resume": an earlier attempt or a crashed
   * process left it unfinished. "completed": it already finished. "superseded": a
   * later sync of the audience started, and this one has nothing left to do.
   */
  status: "new" | "resume" | "completed" | "superseded";
  /** HSCAN cursor of the `pending` hash where the sync continues. */
  cursor: string;
  sent: number;
  failed: number;
  /** Start of the sync's first attempt, epoch ms; the events' timestamp and receivedAt. */
  startedAt: number;
  kind: SyncKind;
  /** Number of an unfinished earlier sync that this one replaces, 0 when none. */
  supersededNumber: number;
}

/**
 * Starts or resumes sync number ARGV[1] of an audience. A higher number than the stored
 * one starts a new sync and replaces an unfinished older one.
 * KEYS: sync progress, meta. ARGV: sync number, now ms.
 */
const BEGIN_SYNC_LUA = `
local n = tonumber(ARGV[1])
local progress = redis.call('HMGET', KEYS[1], 'number', 'state', 'cursor', 'sent', 'failed', 'startedAt', 'kind')
local number = tonumber(progress[1]) or 0

if number > n then
  return { 'superseded', '0', 0, 0, 0, 'delta', 0 }
end
if number == n then
  if progress[2] == 'completed' then
    return { 'completed', progress[3], tonumber(progress[4]), tonumber(progress[5]), tonumber(progress[6]), progress[7], 0 }
  end
  -- A failed sync runs again when an operator retries its job.
  redis.call('HSET', KEYS[1], 'state', 'running')
  return { 'resume', progress[3], tonumber(progress[4]), tonumber(progress[5]), tonumber(progress[6]), progress[7], 0 }
end

local superseded = 0
if number > 0 and progress[2] == 'running' then
  superseded = number
end

local kind = 'initial'
if redis.call('HEXISTS', KEYS[2], 'lastSyncNumber') == 1 then
  kind = 'delta'
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'number', ARGV[1], 'state', 'running', 'cursor', '0', 'sent', 0, 'failed', 0, 'startedAt', ARGV[2], 'kind', kind)
return { 'new', '0', 0, 0, tonumber(ARGV[2]), kind, superseded }
`;

/**
 * Records the outcome of one batch of a sync.
 * KEYS: current, pending, errors, sync progress.
 * ARGV: sync number, is-membership ("1"/"0"), next cursor ("" to keep it), count of
 * delivered members d, then d pairs (member, value JSON sent), then pairs (member,
 * error JSON) of the rejected ones.
 *
 * A delivered member leaves `pending` when its current value is the one sent. When the
 * value changed while the batch was in flight, the sent value becomes its last synced
 * value, so the member stays pending. A rejected member stays pending with its error.
 * The marks apply even when a later sync took over, because they are facts about Hydra;
 * the counters and the cursor move only while this sync is the running one.
 * Returns 1 while this sync is the running one, else 0.
 */
const RECORD_BATCH_LUA = `${RECORD_LUA}
local n = ARGV[1]
local is_membership = ARGV[2] == '1'
local delivered = tonumber(ARGV[4])

for i = 5, 4 + 2 * delivered, 2 do
  local member, sent = ARGV[i], normalize(ARGV[i + 1], is_membership)
  local record = redis.call('HGET', KEYS[1], member)
  local current_value = nil
  if record then
    local _, _, value = parse_record(record)
    current_value = normalize(value, is_membership)
  end

  if current_value == sent then
    redis.call('HDEL', KEYS[2], member)
    if current_value == nil then
      redis.call('HDEL', KEYS[1], member)
    end
  else
    redis.call('HSET', KEYS[2], member, sent or '')
  end
  redis.call('HDEL', KEYS[3], member)
end

local rejected = 0
for i = 5 + 2 * delivered, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  rejected = rejected + 1
end

local progress = redis.call('HMGET', KEYS[4], 'number', 'state')
if progress[1] ~= n or progress[2] ~= 'running' then
  return 0
end
redis.call('HINCRBY', KEYS[4], 'sent', delivered)
redis.call('HINCRBY', KEYS[4], 'failed', rejected)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[4], 'cursor', ARGV[3])
end
return 1
`;

/**
 * Ends sync ARGV[1] as ARGV[3] ("completed" or "failed") and, when completed, stores it
 * as the audience's last sync.
 * KEYS: sync progress, meta. ARGV: sync number, now ms, final state, error message.
 * Returns { 1, sent, failed, kind, startedAt } when this sync was running, else { 0 }.
 */
const END_SYNC_LUA = `
local progress = redis.call('HMGET', KEYS[1], 'number', 'state', 'sent', 'failed', 'kind', 'startedAt')
if progress[1] ~= ARGV[1] or progress[2] ~= 'running' then
  return { 0 }
end

redis.call('HSET', KEYS[1], 'state', ARGV[3], 'finishedAt', ARGV[2])
if ARGV[3] == 'completed' then
  redis.call('HDEL', KEYS[1], 'error')
  redis.call('HSET', KEYS[2], 'lastSyncNumber', ARGV[1], 'lastSyncKind', progress[5], 'lastSyncStartedAt', progress[6],
    'lastSyncFinishedAt', ARGV[2], 'lastSyncSent', progress[3], 'lastSyncFailed', progress[4])
else
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
end
return { 1, tonumber(progress[3]), tonumber(progress[4]), progress[5], tonumber(progress[6]) }
`;

const beginSyncScript = new LuaScript(BEGIN_SYNC_LUA);
const recordBatchScript = new LuaScript(RECORD_BATCH_LUA);
const endSyncScript = new LuaScript(END_SYNC_LUA);

/** Starts or resumes a sync; see SyncStart. */
export async function beginSync(redis: Redis, keys: EngageKeys, audience: string, syncNumber: number, nowMs: number): Promise<SyncStart> {
  const reply = (await beginSyncScript.run(redis, [keys.syncProgress(audience), keys.meta(audience)], [syncNumber, nowMs])) as [
    SyncStart["status"],
    string,
    number,
    number,
    number,
    SyncKind,
    number,
  ];
  const [status, cursor, sent, failed, startedAt, kind, supersededNumber] = reply;
  return { status, cursor, sent, failed, startedAt, kind, supersededNumber };
}

/** Hydra's rejection of a member's event, kept in the `errors` hash until a later sync delivers it. */
export interface MemberError {
  syncNumber: number;
  /** Hydra's status for the event; 413 when the event alone exceeds BATCH_MAX_BYTES. */
  status: number;
  code?: string;
  error: string;
  retryable: boolean;
  /** Epoch ms. */
  at: number;
}

export interface BatchOutcome {
  delivered: { member: string; valueJson: string }[];
  rejected: { member: string; error: MemberError }[];
  /** Cursor to store once the batch is recorded; undefined keeps the stored one. */
  nextCursor?: string;
}

/** Records a batch's delivered and rejected members. Returns false when a later sync took over. */
export async function recordBatch(
  redis: Redis,
  keys: EngageKeys,
  audience: string,
  isMembership: boolean,
  syncNumber: number,
  outcome: BatchOutcome,
): Promise<boolean> {
  const args: (string | number)[] = [syncNumber, isMembership ? "1" : "0", outcome.nextCursor ?? "", outcome.delivered.length];
  for (const { member, valueJson } of outcome.delivered) args.push(member, valueJson);
  for (const { member, error } of outcome.rejected) args.push(member, JSON.stringify(error));

  const scriptKeys = [keys.current(audience), keys.pending(audience), keys.errors(audience), keys.syncProgress(audience)];
  return (await recordBatchScript.run(redis, scriptKeys, args)) === 1;
}

/** Totals of a finished sync. */
export interface SyncTotals {
  sent: number;
  failed: number;
  kind: SyncKind;
  startedAt: number;
}

/**
 * Ends a sync as completed or failed. Returns its totals, or undefined when the sync was
 * not the running one (already ended, or replaced by a later sync).
 */
export async function endSync(
  redis: Redis,
  keys: EngageKeys,
  audience: string,
  syncNumber: number,
  nowMs: number,
  state: "completed" | "failed",
  errorMessage = "",
): Promise<SyncTotals | undefined> {
  const reply = (await endSyncScript.run(redis, [keys.syncProgress(audience), keys.meta(audience)], [syncNumber, nowMs, state, errorMessage])) as [
    number,
    number?,
    number?,
    SyncKind?,
    number?,
  ];
  if (reply[0] !== 1) return undefined;
  return { sent: reply[1] ?? 0, failed: reply[2] ?? 0, kind: reply[3] ?? "delta", startedAt: reply[4] ?? nowMs };
}
