/**
 * Error codes of the producer's JSON error responses:
 * `{"success":false,"error":{"code","message","field"?}}`.
 */
export type RequestErrorCode =
  | "unauthorized"
  | "not_found"
  | "method_not_allowed"
  | "payload_too_large"
  | "event_too_large"
  | "too_many_events"
  | "unsupported_encoding"
  | "invalid_gzip"
  | "invalid_json"
  | "invalid_body"
  | "invalid_event"
  | "invalid_signature"
  | "webhook_not_configured"
  | "shutting_down"
  | "redis_unavailable"
  | "internal_error";

/**
 * A request the producer answers with an error status. Retryable errors (5xx) tell the
 * client to send the same request again; the others will fail the same way again.
 */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: RequestErrorCode,
    message: string,
    /** Name of the body field at fault, when one is. */
    readonly field?: string,
  ) {
    super(message);
    this.name = "RequestError";
  }

  get retryable(): boolean {
    return this.status >= 500;
  }
}

/**
 * Why one event was rejected. `reason` is the counter name in the stats hash
 * (`rejected:<reason>`) and in the batch response's `rejected` list.
 */
export type RejectionReason =
  | "not_an_object"
  | "unknown_type"
  | "missing_event"
  | "missing_user"
  | "invalid_field"
  | "invalid_timestamp"
  | "event_too_large";

export interface Rejection {
  reason: RejectionReason;
  field?: string;
  message: string;
}

/**
 * Redis did not store every event of a request. Retryable: the producer answers 503, and
 * the client's retry is deduplicated for events that were stored.
 */
export class EventWriteError extends Error {
  readonly retryable = true;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EventWriteError";
  }
}
