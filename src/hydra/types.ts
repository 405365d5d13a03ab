/** Outcome of one event in a batch sent to Hydra, in batch order. */
export interface EventResult {
  /** 200 when Hydra accepted the event, else the status Hydra gave it (or the batch). */
  status: number;
  error?: string;
  /** True when the event may succeed on a later attempt (408, 423, 429, 5xx but 501). */
  retryable: boolean;
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
 * Sends batches to Hydra. Resolves with one result per event when Hydra answered 200
 * or 207, or when a 413 split the batch and at least one part was answered. Rejects
 * with a DeliveryError when the request as a whole failed (400, 401, 403, 429, 5xx,
 * a timeout or a connection error).
 */
export interface HydraClient {
  sendBatch(request: BatchRequest): Promise<EventResult[]>;
  close(): Promise<void>;
}
