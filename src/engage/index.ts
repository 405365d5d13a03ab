/**
 * Engage audience sync: coalesces Engage audience memberships and computed traits into
 * periodic batch syncs to Hydra. docs/engage.md describes the behavior and the Redis layout.
 */
export { systemClock, type Clock } from "./clock.js";
export { listAudiences, type AudienceSummary } from "./audiences.js";
export { ENGAGE_GROUP, ENGAGE_SYNC_QUEUE } from "./keys.js";
export { toSnakeCase } from "./snake-case.js";
export {
  startEngageService,
  waitForSync,
  type EngageRole,
  type EngageService,
  type EngageServiceOptions,
  type SyncCompletedEvent,
  type SyncFailedEvent,
} from "./service.js";
export type { SyncJobData, SyncResult } from "./sync-runner.js";
