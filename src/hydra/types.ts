import type { DeliveryErrorCode } from "../errors/delivery-error.js";

/** Outcome of one event in a batch sent to Hydra, in batch order. */
export interface EventResult {
  /**
   * 200 when Hydra accepted the event, else the status Hydra gave it (or the batch).
   * 0 when no response arrived for the event's part of a split batch (timeout, connection error).
   */
  status: number;
  error?: string;
  /** True when the event may succeed on a later attempt (408, 423, 429, 5xx but 501). */
  retryable: boolean;
  /** Class of the failure, set on every event that Hydra did not accept. */
  code?: DeliveryErrorCode;
  /** Time before which this event must not be sent again (from a 429's Retry-After), in epoch milliseconds. */
  retryAtMs?: number;
}

/** One request to Hydra's POST /v1/batch. */
export interface BatchRequest {
  apiKey: string;
  /** Same on every attempt of the batch; sent as the Idempotency-Key header. */
  idempotencyKey: string;
  /** The events as JSON texts, already normalized; the client joins them into the body. */
  events: string[];
}

/**
 * Sends batches to Hydra. Resolves with one result per event, in batch order, when
 * Hydra responded with 200 or 207, and when a batch split after a 413 ended differently in
 * its halves. Rejects with a DeliveryError when the request as a whole failed (400,
 * 401, 403, 429, 5xx, a timeout or a connection error), and when a split batch's first
 * half failed with a retryable error or both halves failed with the same code.
 * docs/hydra-api.md has the full table.
 */
export interface HydraClient {
  sendBatch(request: BatchRequest): Promise<EventResult[]>;
  close(): Promise<void>;
}
