import type { Batch } from "../batching/lane-buffer.js";

/** Reason a job's events did not reach Hydra, kept on dead letters for the operator. */
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
 * `events` contains each event as JSON text, sent to Hydra as it is. Keeping text spares
 * the router and the worker a parse and a serialization of every event.
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
  /** JSON text of each event, in batch order. */
  events: string[];
  count: number;
  bytes: number;
  /** Start of the retry window, in epoch milliseconds. */
  /** When the current run of failures began, in epoch milliseconds; the retry window counts from it. */
  failingSince?: number;
  /** Hydra's response to the events of a "rejected" job, per event when Hydra gave one. */
  rejection?: HydraRejection & { errors?: (string | undefined)[] };
  /**
   * Set when the job was dead-lettered. A job that starts with it set was replayed by an
   * operator: the worker clears it and delivers the events again.
   */
  deadLetter?: HydraRejection & { attempts: number };
}

/** Return value of a completed delivery job. */
export interface DeliveryJobResult {
  delivered: number;
  rejected: number;
  /** Users that became held behind a retry job. */
  held: number;
  retryJobId?: string;
}

/** Builds the data of a job that delivers a batch read from a lane stream. */
export function batchJobData(source: string, lane: string, kind: "batch" | "replay", batch: Batch): DeliveryJobData {
  return {
    source,
    lane,
    kind,
    entryIds: batch.entries.map((entry) => entry.id),
    users: batch.entries.map((entry) => entry.user),
    // TODO: a job that named only its entry ids, with the worker reading the events by
    // XRANGE, would spare copying each event into Redis twice (measured in
    // docs/benchmarks.md). It needs STREAM_RETENTION to outlast HYDRA_RETRY_WINDOW.
    events: batch.entries.map((entry) => entry.event),
    count: batch.entries.length,
    bytes: batch.bytes,
  };
}
