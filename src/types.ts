/**
 * The vocabulary of hydra-sync, in Segment's and BullMQ's words.
 *
 * - event: one Segment call (identify, track, page, screen, group, alias), a JSON object.
 * - source: a Segment source, known by its write key; each has its own Hydra API key.
 * - stream entry: an accepted event stored in a Redis stream, waiting for delivery.
 * - lane: one source and one partition (`<source>.p<n>`); a user's events share a lane.
 * - batch: up to BATCH_MAX_EVENTS events of one lane, sent to Hydra in one request.
 * - job: a BullMQ job that contains one batch. An attempt is one run of the job.
 * - delivery: a batch that Hydra accepted, in whole or per event (207).
 * - dead letter: a job that ended failed; its events wait for an operator to replay them.
 * - audience, computed trait: Engage computations sent as identify calls; see src/engage.
 * - sync: one run that sends an audience's changes to Hydra.
 */

/** A Segment event as hydra-sync stores and delivers it: normalized JSON. */
export type SegmentEvent = Record<string, unknown> & {
  type: string;
  messageId: string;
  receivedAt: string;
  timestamp: string;
  userId?: string;
  anonymousId?: string;
};

/** Fields of a lane stream entry. */
export const ENTRY_FIELD_USER = "u";
export const ENTRY_FIELD_EVENT = "e";

/** Counter names in the stats hash. */
export const STAT = {
  accepted: "accepted",
  duplicate: "duplicate",
  engageHeld: "engage_held",
  delivered: "delivered",
  batches: "batches",
  retries: "retries",
  deadLettered: "dead_lettered",
  filtered: (reason: string) => `filtered:${reason}`,
  rejected: (reason: string) => `rejected:${reason}`,
} as const;
