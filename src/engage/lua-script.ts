import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/**
 * A Lua script run with EVALSHA, falling back to EVAL once when the server does not
 * have it cached (NOSCRIPT, for example after a restart or SCRIPT FLUSH).
 *
 * Unlike ioredis' defineCommand, it adds no method to the connection, so modules that
 * share a connection cannot collide on a command name.
 */
export class LuaScript {
  private readonly sha: string;

  constructor(readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}

/**
 * Lua helpers shared by the scripts that read the `current` and `pending` hashes.
 *
 * A `current` record is `<timestamp ms>\t<email>\t<value JSON>`; JSON text never holds a
 * raw tab and emails with control characters are dropped, so the first two tabs split it.
 * `normalize` maps a value to what Hydra last saw or should see: for a membership, false
 * and "no value" are the same state, so both become nil.
 */
export const RECORD_LUA = `
local function parse_record(record)
  local first = string.find(record, '\\t', 1, true)
  local second = string.find(record, '\\t', first + 1, true)
  return tonumber(string.sub(record, 1, first - 1)), string.sub(record, first + 1, second - 1), string.sub(record, second + 1)
end

local function normalize(value, is_membership)
  if value == nil or value == false or value == '' then
    return nil
  end
  if is_membership and value == 'false' then
    return nil
  end
  return value
end
`;
