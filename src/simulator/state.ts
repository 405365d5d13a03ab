import { LatencyRecorder, type LatencySummary } from "./latency.js";
import { ProfileStore, type AudienceRecord, type CompanyRecord, type PersonRecord } from "./profiles.js";

/** One POST /v1/batch request as the simulator saw it, faults and failures included. */
export interface RecordedBatch {
  /** Sequence number of the request, from 1. */
  id: number;
  /** Time the request arrived, ISO 8601. */
  receivedAt: string;
  idempotencyKey?: string;
  /** Short SHA-256 of the API key; the key itself is never kept. */
  apiKeyHash?: string;
  userAgent?: string;
  contentType?: string;
  contentEncoding?: string;
  sentAt?: string;
  /** Body size in bytes after any gzip decoding. */
  bytes: number;
  /** Events in the body; 0 when the body was not a valid batch. */
  eventCount: number;
  /** Status the simulator responded with; 0 when it sent none (noAnswer, resetConnection). */
  status: number;
  /** Events accepted for the first time. */
  accepted: number;
  /** Events accepted again under a messageId seen before. */
  duplicates: number;
  /** Events that got a non-200 status inside a 207. */
  rejected: number;
  /** The fault applied to this request, if any. */
  fault?: string;
  /** messageIds in batch order, kept only while recordEvents is on. */
  messageIds?: string[];
}

/** An accepted event, kept only while recordEvents is on. */
export interface RecordedEvent {
  batchId: number;
  personId: string;
  /** Time the simulator accepted the event, ISO 8601. */
  acceptedAt: string;
  event: Record<string, unknown>;
}

export interface SimulatorStats {
  /** POST /v1/batch requests, whatever the response. */
  requests: number;
  /** Requests whose events were processed (a 200 or 207). */
  batches: number;
  eventsAccepted: number;
  duplicates: number;
  /** Events that got a non-200 status inside a 207. */
  rejected: number;
  faultsApplied: number;
  /** Requests by the status sent; "0" counts requests left without a response. */
  requestsByStatus: Record<string, number>;
  persons: number;
  companies: number;
}

export interface EventFilter {
  type?: string;
  userId?: string;
  messageId?: string;
  limit?: number;
}

/** Accepted events kept for GET /_sim/events. */
const MAX_RECORDED_EVENTS = 10_000;

/** Requests kept for GET /_sim/batches. */
const MAX_RECORDED_BATCHES = 1_000;

/** A validated identify or track event. */
export type AcceptedEvent = Record<string, unknown> & { type: "identify" | "track"; messageId: string; receivedAt: string };

/**
 * Everything the simulator records: counters, recent requests, accepted events,
 * profiles and latency. With recordEvents off it keeps only counters, messageIds,
 * request metadata and latency, so long benchmarks stay within bounded memory
 * (apart from the set of messageIds).
 */
export class SimulatorState {
  private readonly recentBatches: RecordedBatch[] = [];
  private readonly recentEvents: RecordedEvent[] = [];
  // NOTE: this set grows by one entry per distinct messageId (an estimated 100 bytes
  // each) for the simulator's lifetime. A benchmark of millions of events should
  // POST /_sim/reset between runs.
  private readonly seenMessageIds = new Set<string>();
  private readonly profiles = new ProfileStore();
  private readonly latencyRecorder = new LatencyRecorder();
  private counters = emptyCounters();

  constructor(
    readonly recordEvents: boolean,
    private readonly now: () => number,
  ) {}

  /** Adds a request to the recent ones and to the counters. */
  recordBatch(batch: RecordedBatch): void {
    this.counters.requests += 1;
    if (batch.status === 200 || batch.status === 207) this.counters.batches += 1;
    if (batch.fault !== undefined) this.counters.faultsApplied += 1;
    this.counters.rejected += batch.rejected;

    const status = String(batch.status);
    this.counters.requestsByStatus[status] = (this.counters.requestsByStatus[status] ?? 0) + 1;

    if (!this.recordEvents) delete batch.messageIds;
    this.recentBatches.push(batch);
    if (this.recentBatches.length > MAX_RECORDED_BATCHES) this.recentBatches.shift();
  }

  /**
   * Accepts one valid event: a messageId seen before makes it a duplicate, which is
   * counted and not recorded again. Returns whether the event was a duplicate.
   */
  acceptEvent(event: AcceptedEvent, batchId: number): "accepted" | "duplicate" {
    if (this.seenMessageIds.has(event.messageId)) {
      this.counters.duplicates += 1;
      return "duplicate";
    }

    const nowMs = this.now();
    this.seenMessageIds.add(event.messageId);
    this.counters.eventsAccepted += 1;
    this.latencyRecorder.record(nowMs - Date.parse(event.receivedAt));

    if (this.recordEvents) {
      const acceptedAt = new Date(nowMs).toISOString();
      const personId = this.profiles.apply(event, acceptedAt);
      this.recentEvents.push({ batchId, personId, acceptedAt, event });
      if (this.recentEvents.length > MAX_RECORDED_EVENTS) this.recentEvents.shift();
    }
    return "accepted";
  }

  stats(): SimulatorStats {
    return {
      ...this.counters,
      requestsByStatus: { ...this.counters.requestsByStatus },
      persons: this.profiles.personCount,
      companies: this.profiles.companyCount,
    };
  }

  /** Latest requests, oldest first. */
  batches(limit = MAX_RECORDED_BATCHES): RecordedBatch[] {
    return this.recentBatches.slice(-limit).map((batch) => structuredClone(batch));
  }

  /** Latest accepted events that match the filter, oldest first. */
  events(filter: EventFilter = {}): RecordedEvent[] {
    const matching = this.recentEvents.filter(
      ({ event }) =>
        (filter.type === undefined || event.type === filter.type) &&
        (filter.userId === undefined || event.userId === filter.userId) &&
        (filter.messageId === undefined || event.messageId === filter.messageId),
    );
    return matching.slice(-(filter.limit ?? MAX_RECORDED_EVENTS)).map((recorded) => structuredClone(recorded));
  }

  persons(): PersonRecord[] {
    return this.profiles.listPersons();
  }

  /** Returns a person by userId or anonymousId. */
  person(id: string): PersonRecord | undefined {
    return this.profiles.getPerson(id);
  }

  companies(): CompanyRecord[] {
    return this.profiles.listCompanies();
  }

  audiences(): AudienceRecord[] {
    return this.profiles.listAudiences();
  }

  /** Time from each accepted event's receivedAt to its acceptance here, in milliseconds. */
  latency(): LatencySummary {
    return this.latencyRecorder.summary();
  }

  reset(): void {
    this.recentBatches.length = 0;
    this.recentEvents.length = 0;
    this.seenMessageIds.clear();
    this.profiles.clear();
    this.latencyRecorder.reset();
    this.counters = emptyCounters();
  }
}

function emptyCounters() {
  return {
    requests: 0,
    batches: 0,
    eventsAccepted: 0,
    duplicates: 0,
    rejected: 0,
    faultsApplied: 0,
    requestsByStatus: {} as Record<string, number>,
  };
}
