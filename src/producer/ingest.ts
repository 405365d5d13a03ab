import { partitionOf } from "../batching/partition.js";
import type { Source } from "../config/sources.js";
import type { RedisKeys } from "../redis/keys.js";
import { STAT } from "../types.js";
import { addCounter, emptyWrites, type RequestWrites, type StreamAppend } from "./append.js";
import type { Rejection } from "./errors.js";
import { normalizeEvent, restoreEvent, type RequestContext } from "./normalize.js";
import { filterReasonOf, isEngageIdentify, type FilterReason } from "./routing.js";
import { isRejected, validateEvent, type JsonObject, type ValidateOptions } from "./validate.js";

/** A rejected event of a request, by its position in the request. */
export interface IndexedRejection extends Rejection {
  index: number;
}

/** Outcome of a request's events, before Redis stores them. */
export interface IngestResult {
  writes: RequestWrites;
  rejected: IndexedRejection[];
  /** Events handed to storage: lanes and Engage stream, duplicates included. */
  stored: number;
  engage: number;
  filtered: Map<FilterReason, number>;
}

/** Stream key and dedupe key prefix of one stream; both share the stream's hash tag. */
interface StreamKeys {
  stream: string;
  dedupePrefix: string;
}

interface SourceStreams {
  lanes: StreamKeys[];
  engage: StreamKeys;
}

/**
 * Validates, normalizes and routes the events of requests, and collects the Redis writes
 * they need. Keys of every lane are built once, at start.
 */
export class EventIngest {
  private readonly streamsBySource = new Map<string, SourceStreams>();

  constructor(
    keys: RedisKeys,
    sources: readonly Source[],
    private readonly partitions: number,
    private readonly maxEventBytes: number,
  ) {
    for (const source of sources) {
      const lanes: StreamKeys[] = [];
      for (let partition = 0; partition < partitions; partition++) {
        const lane = keys.laneId(source.name, partition);
        lanes.push({ stream: keys.laneStream(lane), dedupePrefix: keys.dedupePrefix(lane) });
      }

      // The Engage stream's hash tag is `{engage.<source>}`; passing that tag's name to
      // dedupePrefix puts its dedupe keys in the same Redis Cluster slot.
      const engage = { stream: keys.engageStream(source.name), dedupePrefix: keys.dedupePrefix(keys.engageTag(source.name)) };
      this.streamsBySource.set(source.name, { lanes, engage });
    }
  }

  /**
   * Processes the events of one request. Invalid events are rejected alone; the others
   * are filtered, or normalized and queued for their stream.
   */
  ingest(events: readonly unknown[], source: Source, request: RequestContext, options: ValidateOptions): IngestResult {
    const streams = this.streamsBySource.get(source.name);
    if (streams === undefined) throw new Error(`source "${source.name}" is not configured`);

    const result: IngestResult = { writes: emptyWrites(), rejected: [], stored: 0, engage: 0, filtered: new Map() };

    for (let index = 0; index < events.length; index++) {
      const raw = events[index];

      const valid = validateEvent(raw, options);
      if (isRejected(valid)) {
        this.reject(result, index, valid, raw);
        continue;
      }

      const filterReason = filterReasonOf(valid.type, valid.raw.integrations, request.batchIntegrations);
      if (filterReason !== undefined) {
        result.filtered.set(filterReason, (result.filtered.get(filterReason) ?? 0) + 1);
        addCounter(result.writes, STAT.filtered(filterReason));
        continue;
      }

      const sent = normalizeEvent(valid, request);
      const stored = valid.raw;
      const json = JSON.stringify(stored);

      // NOTE: the 32 KiB limit applies to the event as stored, after normalization. An event
      // sent just under the limit can pass it by the fields added here (receivedAt, a
      // generated messageId, the batch's context). UTF-8 takes at most 3 bytes per UTF-16
      // code unit, so the exact byte count is only needed for long events.
      if (json.length * 3 > this.maxEventBytes && Buffer.byteLength(json, "utf8") > this.maxEventBytes) {
        restoreEvent(valid, sent);
        this.reject(result, index, { reason: "event_too_large", message: `the event is larger than ${this.maxEventBytes / 1024} KiB, the limit of one event` }, raw);
        continue;
      }

      const userKey = (valid.userId ?? valid.anonymousId) as string;
      let keys: StreamKeys;
      if (isEngageIdentify(stored)) {
        keys = streams.engage;
        result.engage++;
        addCounter(result.writes, STAT.engageHeld);
      } else {
        keys = streams.lanes[partitionOf(userKey, this.partitions)];
      }

      let append = result.writes.appends.get(keys.stream);
      if (append === undefined) {
        append = { stream: keys.stream, dedupePrefix: keys.dedupePrefix, entries: [], messageIds: [], engage: keys === streams.engage } satisfies StreamAppend;
        result.writes.appends.set(keys.stream, append);
      }
      append.entries.push(userKey, json);
      append.messageIds.push(stored.messageId as string);
      result.stored++;
    }

    if (result.stored > 0) addCounter(result.writes, STAT.accepted, result.stored);
    return result;
  }

  private reject(result: IngestResult, index: number, rejection: Rejection, raw: unknown): void {
    result.rejected.push({ index, ...rejection });
    addCounter(result.writes, STAT.rejected(rejection.reason));
    result.writes.rejected.push({ ...rejection, event: rawEventJson(raw) });
  }
}

/** Returns the event as sent, as JSON, without its write key. */
function rawEventJson(raw: unknown): string {
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw) && (raw as JsonObject).writeKey !== undefined) {
    return JSON.stringify({ ...raw, writeKey: undefined });
  }
  return JSON.stringify(raw) ?? "null";
}
