import type { Redis } from "ioredis";

import type { RedisKeys } from "../redis/keys.js";

/**
 * Moves events of held users out of a batch, atomically with the hold check, and
 * acknowledges their stream entries in the same step (so a crash never parks an event
 * twice).
 *
 * KEYS: held hash, lane stream, then one parked list per candidate entry.
 * ARGV: consumer group, then (entry id, user key, event JSON) per candidate entry.
 * Returns the 0-based positions of the parked entries, then the number of held users.
 */
const PARK_SCRIPT = `
local parked = {}
for i = 3, #KEYS do
  local base = 2 + (i - 3) * 3
  local entryId, user, event = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  if redis.call("HEXISTS", KEYS[1], user) == 1 then
    redis.call("RPUSH", KEYS[i], event)
    redis.call("XACK", KEYS[2], ARGV[1], entryId)
    parked[#parked + 1] = i - 3
  end
end
parked[#parked + 1] = redis.call("HLEN", KEYS[1])
return parked`;

/**
 * Returns up to ARGV[3] parked events of a user held by the given retry job. When none
 * are left, the hold ends in the same step, so the router parks nothing more for the
 * user after this call.
 *
 * KEYS: held hash, the user's parked list. ARGV: user key, holding job id, max count.
 * Returns false when the user is held by another job.
 */
const PEEK_PARKED_SCRIPT = `
if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then
  return false
end
local events = redis.call("LRANGE", KEYS[2], 0, tonumber(ARGV[3]) - 1)
if #events == 0 then
  redis.call("HDEL", KEYS[1], ARGV[1])
end
return events`;

export interface ParkCandidate {
  id: string;
  user: string;
  event: string;
}

/**
 * Held users and their parked events, per lane. A user is held while a retry job contains
 * some of the user's earlier events. The user's later events wait in the parked list,
 * and the retry job sends them, in order, after its own.
 */
export class LaneHolds {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async heldCount(lane: string): Promise<number> {
    return this.redis.hlen(this.keys.laneHeld(lane));
  }

  /** Parks the candidates whose user is held; returns their positions and the held-user count. */
  async park(lane: string, group: string, candidates: ParkCandidate[]): Promise<{ parked: Set<number>; heldCount: number }> {
    const keys = [this.keys.laneHeld(lane), this.keys.laneStream(lane)];
    const args: string[] = [group];
    for (const candidate of candidates) {
      keys.push(this.keys.laneParked(lane, candidate.user));
      args.push(candidate.id, candidate.user, candidate.event);
    }

    const reply = (await this.redis.eval(PARK_SCRIPT, keys.length, ...keys, ...args)) as number[];
    const heldCount = reply.pop() ?? 0;
    return { parked: new Set(reply), heldCount };
  }

  /** Holds the users for the retry job; later events of these users will be parked. */
  async hold(lane: string, users: Iterable<string>, jobId: string): Promise<void> {
    const fields: string[] = [];
    for (const user of users) fields.push(user, jobId);
    if (fields.length > 0) await this.redis.hset(this.keys.laneHeld(lane), ...fields);
  }

  /**
   * Returns the next parked events of a user held by jobId, or an empty list when the
   * hold ended because none were left, or undefined when the user is held by another job.
   */
  async peekParked(lane: string, user: string, jobId: string, maxCount: number): Promise<string[] | undefined> {
    const reply = (await this.redis.eval(
      PEEK_PARKED_SCRIPT,
      2,
      this.keys.laneHeld(lane),
      this.keys.laneParked(lane, user),
      user,
      jobId,
      maxCount,
    )) as string[] | null;
    return reply ?? undefined;
  }

  /** Removes parked events that were delivered, from the front of the user's list. */
  async commitParked(lane: string, user: string, count: number): Promise<void> {
    await this.redis.ltrim(this.keys.laneParked(lane, user), count, -1);
  }
}
