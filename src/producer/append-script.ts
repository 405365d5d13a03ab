import { ENTRY_FIELD_EVENT, ENTRY_FIELD_USER } from "../types.js";

/**
 * Lua script that stores events of one stream (a lane, or a source's Engage stream),
 * skipping messageIds seen within the dedupe window. One call carries the stream's events
 * of one or more requests.
 *
 * KEYS[1]    the stream
 * KEYS[1+i]  the dedupe key of event i (only when the TTL is above 0)
 * ARGV[1]    dedupe TTL in milliseconds, 0 = no deduplication
 * ARGV[2i]   user key of event i (entry field `u`)
 * ARGV[2i+1] event JSON of event i (entry field `e`)
 *
 * For each event, `SET <dedupe key> 1 NX PX <ttl>` runs first and XADD runs only when the
 * SET created the key, so a retried request does not store an event twice. When an XADD
 * fails, the script deletes that event's dedupe key before it returns the error: Redis
 * keeps a script's earlier writes, and a kept key would make the client's retry of the
 * event a duplicate that is never stored.
 *
 * Returns the positions (1-based, in ARGV order) of the events skipped as duplicates, an
 * empty array when there were none.
 *
 * Every key is in KEYS and shares the stream's hash tag, as Redis Cluster requires.
 */
export const APPEND_EVENTS_LUA = `
local ttl = ARGV[1]
local dedupe = tonumber(ttl) > 0
local stream = KEYS[1]
local count = (#ARGV - 1) / 2
local duplicates = {}

for i = 1, count do
  local fresh = true
  if dedupe then
    fresh = redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ttl)
  end

  if fresh then
    local reply = redis.pcall('XADD', stream, '*', '${ENTRY_FIELD_USER}', ARGV[2 * i], '${ENTRY_FIELD_EVENT}', ARGV[2 * i + 1])
    if type(reply) == 'table' and reply.err then
      if dedupe then
        redis.call('DEL', KEYS[i + 1])
      end
      return reply
    end
  else
    duplicates[#duplicates + 1] = i
  end
end

return duplicates
`;
