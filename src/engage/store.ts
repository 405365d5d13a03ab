import type { Redis } from "ioredis";

import { ENGAGE_GROUP, type EngageKeys } from "./keys.js";
import { LuaScript, RECORD_LUA } from "./lua-script.js";
import type { MembershipChange } from "./membership-event.js";

const KEYS_BEFORE_CHANGES = 4;
const KEYS_PER_CHANGE = 4;
const ARGS_PER_CHANGE = 7;

/**
 * Applies a batch of changes of one source and acknowledges their stream entries, in one
 * atomic step, so two consumers never lose a change and an entry is acknowledged only
 * with its update.
 *
 * KEYS: stream, audiences, schedule, schedule-set-at, then per change: meta, current,
 * pending, errors of its audience.
 * ARGV: group, now ms, initial sync delay ms, count of entry ids to acknowledge, the
 * entry ids, then per change: audience, is-membership ("1"/"0"), member, value JSON,
 * email, timestamp ms, context.personas JSON.
 *
 * Per change: an event older than the stored one is stale and skipped. Otherwise the
 * record is written, and the member is pending exactly when its new value differs from
 * the value last synced (the `pending` entry, else the old current value). A membership
 * that ends up false and not pending is removed from `current`. An audience seen for the
 * first time gets its initial sync at now + the initial sync delay.
 *
 * Returns { changed, unchanged, stale, new audiences }.
 */
const APPLY_CHANGES_LUA = `${RECORD_LUA}
local now = tonumber(ARGV[2])
local initial_delay = tonumber(ARGV[3])
local ack_count = tonumber(ARGV[4])
local changed, unchanged, stale, new_audiences = 0, 0, 0, 0

local first_change_arg = 5 + ack_count
local change_count = (#ARGV - first_change_arg + 1) / ${ARGS_PER_CHANGE}

for i = 0, change_count - 1 do
  local a = first_change_arg + i * ${ARGS_PER_CHANGE}
  local audience, is_membership, member = ARGV[a], ARGV[a + 1] == '1', ARGV[a + 2]
  local value, email, ts_text, personas = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local ts = tonumber(ts_text)
  local k = ${KEYS_BEFORE_CHANGES} + i * ${KEYS_PER_CHANGE}
  local meta, current, pending, errors = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]

  if redis.call('HSETNX', meta, 'firstSeenAt', now) == 1 then
    redis.call('SADD', KEYS[2], audience)
    redis.call('ZADD', KEYS[3], 'NX', now + initial_delay, audience)
    redis.call('ZADD', KEYS[4], 'NX', now, audience)
    new_audiences = new_audiences + 1
  end
  redis.call('HSET', meta, 'membership', is_membership and '1' or '0', 'personas', personas)

  local old = redis.call('HGET', current, member)
  local old_ts, old_email, old_value = 0, '', nil
  if old then
    old_ts, old_email, old_value = parse_record(old)
  end

  if old and ts < old_ts then
    stale = stale + 1
  else
    if email == '' then
      email = old_email
    end
    local current_value = normalize(old_value, is_membership)
    local new_value = normalize(value, is_membership)
    local before = redis.call('HGET', pending, member)
    local synced_value = current_value
    if before then
      synced_value = normalize(before, is_membership)
    end

    if current_value == nil and new_value ~= nil then
      redis.call('HINCRBY', meta, 'members', 1)
    elseif current_value ~= nil and new_value == nil then
      redis.call('HINCRBY', meta, 'members', -1)
    end

    if new_value == synced_value then
      if before then
        redis.call('HDEL', pending, member)
        redis.call('HDEL', errors, member)
      end
      if new_value == nil then
        redis.call('HDEL', current, member)
      else
        redis.call('HSET', current, member, ts_text .. '\\t' .. email .. '\\t' .. value)
      end
    else
      redis.call('HSET', current, member, ts_text .. '\\t' .. email .. '\\t' .. value)
      if not before then
        redis.call('HSET', pending, member, current_value or '')
      end
    end

    if new_value == current_value then
      unchanged = unchanged + 1
    else
      changed = changed + 1
    end
  end
end

for i = 5, 4 + ack_count, 500 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, math.min(i + 499, 4 + ack_count)))
end

return { changed, unchanged, stale, new_audiences }
`;

const applyChangesScript = new LuaScript(APPLY_CHANGES_LUA);

/** Outcome of one applyChanges call. */
export interface ApplyResult {
  /** Changes whose value differs from the member's current value. */
  changed: number;
  /** Changes that repeat the current value, such as Engage's re-send per identifier. */
  unchanged: number;
  /** Changes older than the member's stored event, skipped. */
  stale: number;
  /** Audiences and computed traits seen for the first time. */
  newAudiences: number;
}

/**
 * Applies changes of one source to the audience state and acknowledges the stream
 * entries `ackIds` (the changes' entries and any invalid ones) in the same script call.
 */
export async function applyChanges(
  redis: Redis,
  keys: EngageKeys,
  changes: MembershipChange[],
  ackIds: string[],
  nowMs: number,
  initialSyncDelayMs: number,
): Promise<ApplyResult> {
  const scriptKeys = [keys.stream, keys.audiences(), keys.schedule(), keys.scheduleSetAt()];
  const args: (string | number)[] = [ENGAGE_GROUP, nowMs, initialSyncDelayMs, ackIds.length, ...ackIds];

  for (const change of changes) {
    scriptKeys.push(keys.meta(change.audience), keys.current(change.audience), keys.pending(change.audience), keys.errors(change.audience));
    args.push(
      change.audience,
      change.isMembership ? "1" : "0",
      change.member,
      change.valueJson,
      change.email,
      change.timestampMs,
      change.personasJson,
    );
  }

  const [changed, unchanged, stale, newAudiences] = (await applyChangesScript.run(redis, scriptKeys, args)) as number[];
  return { changed, unchanged, stale, newAudiences };
}
