/** Why a job's events did not reach Hydra, kept on dead letters for the operator. */
export interface HydraRejection {
  status?: number;
  code: string;
  error: string;
  /** Epoch milliseconds. */
  at: number;
}

/**
 * Data of a job in the `hydra-delivery` queue: one batch of one lane.
 *
 * `events` is the batch as JSON array text, sent to Hydra as it is; keeping it as text
 * spares the router and the worker a parse and a serialization of every event.
 */
export interface DeliveryJobData {
  source: string;
  lane: string;
  /**
   * "batch": events read from the lane stream by the router.
   * "retry": events of held users, retried after a 207 and followed by their parked events.
   * "rejected": events that Hydra rejected for good inside a 207; the job fails on its
   * first attempt with `rejection` and delivers the events when an operator replays it.
   * "replay": events delivered again from the stream by `hydra-sync replay --from-stream`.
   */
  kind: "batch" | "retry" | "rejected" | "replay";
  /** Stream entry ids the batch was read from; the router acknowledges them together. */
  entryIds: string[];
  /** User key (userId, else anonymousId) of each event, in batch order. */
  users: string[];
  /** JSON array text of the events. */
  events: string;
  count: number;
  bytes: number;
  /** Start of the retry window, in epoch milliseconds. */
  firstAttemptAt?: number;
  rejection?: HydraRejection;
}

/** Return value of a completed delivery job. */
export interface DeliveryJobResult {
  delivered: number;
  rejected: number;
  /** Users that became held behind a retry job. */
  held: number;
  retryJobId?: string;
}
