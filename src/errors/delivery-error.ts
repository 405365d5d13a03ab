/**
 * A delivery to Hydra that failed. `retryable` decides what the worker does: a
 * retryable error is retried within HYDRA_RETRY_WINDOW, a permanent one dead-letters
 * the batch at once. `code` names the class of failure for logs, metrics and replay
 * filters.
 */
export type DeliveryErrorCode =
  | "rate_limited"
  | "unauthorized"
  | "payload_too_large"
  | "bad_request"
  | "permanent"
  | "transient"
  | "timeout"
  | "connection";

export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly code: DeliveryErrorCode,
    readonly retryable: boolean,
    /** HTTP status from Hydra, or undefined when no response arrived. */
    readonly status?: number,
    /** Time at which Hydra allows the next request, from Retry-After, in epoch milliseconds. */
    readonly retryAtMs?: number,
  ) {
    super(message);
    this.name = "DeliveryError";
  }
}
