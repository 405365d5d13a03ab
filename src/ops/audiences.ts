import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";

/** One Engage audience as the admin server and `hydra-sync status` show it. */
export interface AudienceSummary {
  source: string;
  /** The audience key, such as "trial_power_users". */
  audience: string;
  /** Membership changes stored and not yet sent to Hydra. */
  pending: number;
  /** Time of the next sync, in epoch milliseconds; null when none is scheduled. */
  nextSyncAt: number | null;
}

/** Lists Engage audiences with their pending changes; src/engage's listAudiences is one. */
export type ListAudiences = (redis: Redis, config: Config) => Promise<AudienceSummary[]>;
