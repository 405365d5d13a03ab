export { backoffDelayMs } from "./backoff.js";
export { classifyStatus, type StatusClass, type StatusClassification } from "./classify.js";
export { buildBatchBody, createHydraClient, DEFAULT_QUICK_RETRIES, type HydraClientOptions } from "./client.js";
export { MAX_BATCH_EVENTS, MAX_BODY_BYTES } from "./limits.js";
export { DEFAULT_RATE_LIMIT_DELAY_MS, parseRetryAfter } from "./retry-after.js";
export type { BatchRequest, EventResult, HydraClient } from "./types.js";
