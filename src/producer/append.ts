import type { Redis } from "ioredis";

import type { Logger } from "../logging/logger.js";
import type { RedisKeys } from "../redis/keys.js";
import { STAT } from "../types.js";
import { APPEND_EVENTS_LUA } from "./append-script.js";
import { EventWriteError, type Rejection } from "./errors.js";

/** Events of one request bound for one stream (a lane or a source's Engage stream). */
export interface StreamAppend {
  stream: string;
  /** Prefix of the dedupe keys, with the stream's hash tag. */
  dedupePrefix: string;
  /** Flat user key / event JSON pairs, in arrival order. */
  entries: string[];
  messageIds: string[];
  /** True for a source's Engage stream, whose duplicates also come off the engage_held count. */
  engage?: boolean;
}

/** A rejected event as the rejected stream keeps it. */
export interface RejectedEntry extends Rejection {
  /** The event as sent, without its write key, as JSON. */
  event: string;
}

/** Every Redis write of one request. */
export interface RequestWrites {
  appends: Map<string, StreamAppend>;
  /** Stats hash field to increment, and by how much. */
  counters: Map<string, number>;
  rejected: RejectedEntry[];
}

export function emptyWrites(): RequestWrites {
  return { appends: new Map(), counters: new Map(), rejected: [] };
}

export function addCounter(writes: RequestWrites, field: string, count = 1): void {
  writes.counters.set(field, (writes.counters.get(field) ?? 0) + count);
}

export function hasWrites(writes: RequestWrites): boolean {
  return writes.appends.size > 0 || writes.counters.size > 0 || writes.rejected.length > 0;
}

const COMMAND_NAME = "hydraSyncAppendEvents";

interface AppendCommand {
  [COMMAND_NAME](args: (string | number)[]): Promise<number[]>;
}

/**
 * Maximum number of events in one script call, so that Redis does not block on one long
 * script while many requests are coalesced. A request's events for one stream always share
 * a call, so one request's part can take a call past this number.
 */
const MAX_EVENTS_PER_CALL = 1_000;

/** A request waiting for its writes, and what happened to them. */
interface PendingRequest {
  duplicates: number;
  failure?: unknown;
  resolve(result: { duplicates: number }): void;
  reject(error: unknown): void;
}

/** One script call: the parts of one or more requests for one stream. */
interface ScriptCall {
  stream: string;
  dedupePrefix: string;
  eventCount: number;
  parts: { append: StreamAppend; request: PendingRequest }[];
}

/** Writes of the requests that arrived within one event loop turn, sent together. */
interface WriteWindow {
  requests: PendingRequest[];
  calls: Map<string, ScriptCall[]>;
  counters: Map<string, number>;
  rejected: { entry: RejectedEntry; source: string; request: PendingRequest }[];
}

/**
 * Stores the events of requests in Redis. The writes of all requests that arrive within
 * one event loop turn are coalesced: one script call per stream (`SET NX PX` on each
 * messageId, then XADD), one HINCRBY per stats field, and the rejected stream entries.
 * They go out together on a connection with auto-pipelining, so every request costs one
 * Redis round trip, shared with the requests beside it, and Redis runs one script call
 * per stream instead of one per request.
 *
 * Memory of a dedupe key, measured on Redis 7.0.15 (x86-64, jemalloc 5.3.0) with the
 * default prefix and a UUID messageId (`hydra-sync:{default.p3}:dedupe:<UUID>`, 67
 * bytes, PX TTL set): MEMORY USAGE reports 120 bytes. used_memory grew by 165 bytes per
 * key over 100,000 such keys, because MEMORY USAGE leaves out the TTL entry and hash table
 * slots. So a 24-hour window costs about 165 MB per million messageIds.
 */
export class EventAppender {
  private readonly statsKey: string;
  private readonly rejectedKey: string;
  private window?: WriteWindow;

  constructor(
    private readonly redis: Redis,
    keys: RedisKeys,
    private readonly dedupeTtlMs: number,
    private readonly rejectedRetentionMs: number,
    private readonly logger: Logger,
  ) {
    this.statsKey = keys.stats();
    this.rejectedKey = keys.rejectedStream();
    if (typeof (redis as unknown as Partial<AppendCommand>)[COMMAND_NAME] !== "function") {
      redis.defineCommand(COMMAND_NAME, { lua: APPEND_EVENTS_LUA });
    }
  }

  /**
   * Writes everything a request stores and returns how many of its events were
   * duplicates.
   *
   * @throws EventWriteError when Redis failed any of the request's writes. Some events may
   * be stored; their dedupe keys make the client's retry store only the others.
   */
  write(writes: RequestWrites, sourceName: string): Promise<{ duplicates: number }> {
    return new Promise((resolve, reject) => {
      const window = this.window ?? this.openWindow();
      const request: PendingRequest = { duplicates: 0, resolve, reject };
      window.requests.push(request);

      for (const append of writes.appends.values()) this.addAppend(window, append, request);

      for (const [field, count] of writes.counters) {
        window.counters.set(field, (window.counters.get(field) ?? 0) + count);
      }

      for (const entry of writes.rejected) window.rejected.push({ entry, source: sourceName, request });
    });
  }

  private openWindow(): WriteWindow {
    const window: WriteWindow = { requests: [], calls: new Map(), counters: new Map(), rejected: [] };
    this.window = window;
    // setImmediate runs after the I/O callbacks of this turn, so every request whose body
    // ended in this turn joins the window.
    setImmediate(() => {
      this.window = undefined;
      this.flush(window).catch((error: unknown) => {
        // Settling an already settled promise does nothing, so this only reaches requests
        // that flush left waiting.
        for (const request of window.requests) request.reject(new EventWriteError(`Storing the events failed: ${(error as Error)?.message ?? error}`, { cause: error }));
      });
    });
    return window;
  }

  private addAppend(window: WriteWindow, append: StreamAppend, request: PendingRequest): void {
    let calls = window.calls.get(append.stream);
    if (calls === undefined) {
      calls = [];
      window.calls.set(append.stream, calls);
    }

    let call = calls.at(-1);
    const count = append.messageIds.length;
    if (call === undefined || (call.eventCount > 0 && call.eventCount + count > MAX_EVENTS_PER_CALL)) {
      call = { stream: append.stream, dedupePrefix: append.dedupePrefix, eventCount: 0, parts: [] };
      calls.push(call);
    }

    call.parts.push({ append, request });
    call.eventCount += count;
  }

  private async flush(window: WriteWindow): Promise<void> {
    const scriptCalls: ScriptCall[] = [];
    const replies: Promise<unknown>[] = [];

    for (const calls of window.calls.values()) {
      for (const call of calls) {
        scriptCalls.push(call);
        replies.push(this.callScript(call));
      }
    }

    const counterStart = replies.length;
    for (const [field, count] of window.counters) {
      replies.push(this.redis.hincrby(this.statsKey, field, count));
    }

    const rejectedStart = replies.length;
    if (window.rejected.length > 0) {
      const minId = String(Math.max(0, Date.now() - this.rejectedRetentionMs));
      for (const { entry, source } of window.rejected) {
        replies.push(this.addRejected(entry, source, minId));
      }
    }

    const settled = await Promise.allSettled(replies);

    let duplicates = 0;
    let engageDuplicates = 0;
    for (let i = 0; i < settled.length; i++) {
      const result = settled[i];
      if (i < counterStart) {
        const callDuplicates = this.settleScriptCall(scriptCalls[i], result);
        duplicates += callDuplicates;
        if (scriptCalls[i].parts[0]?.append.engage) engageDuplicates += callDuplicates;
      } else if (result.status === "rejected") {
        // A failed counter belongs to every request of the window; a failed rejected-stream
        // entry belongs to its own request.
        const owners = i < rejectedStart ? window.requests : [window.rejected[i - rejectedStart].request];
        for (const request of owners) request.failure ??= result.reason;
      }
    }

    if (duplicates > 0) await this.countDuplicates(duplicates, engageDuplicates);

    for (const request of window.requests) {
      if (request.failure === undefined) {
        request.resolve({ duplicates: request.duplicates });
      } else {
        const cause = request.failure as Error;
        request.reject(new EventWriteError(`Redis did not store the request's events: ${cause?.message ?? cause}`, { cause }));
      }
    }
  }

  /** Marks the call's requests failed, or counts their duplicates; returns the call's duplicate count. */
  private settleScriptCall(call: ScriptCall, result: PromiseSettledResult<unknown>): number {
    if (result.status === "rejected") {
      for (const part of call.parts) part.request.failure ??= result.reason;
      return 0;
    }

    const positions = result.value as number[];
    for (const position of positions) {
      // Positions are 1-based over the call's events, in the order of its parts.
      let offset = 0;
      for (const part of call.parts) {
        offset += part.append.messageIds.length;
        if (position <= offset) {
          part.request.duplicates++;
          break;
        }
      }
    }
    return positions.length;
  }

  private callScript(call: ScriptCall): Promise<number[]> {
    const dedupe = this.dedupeTtlMs > 0;
    const keyCount = dedupe ? 1 + call.eventCount : 1;
    const args: (string | number)[] = new Array(1 + keyCount + 1 + 2 * call.eventCount);

    let i = 0;
    args[i++] = keyCount;
    args[i++] = call.stream;
    if (dedupe) {
      for (const part of call.parts) {
        for (const messageId of part.append.messageIds) args[i++] = call.dedupePrefix + messageId;
      }
    }
    args[i++] = this.dedupeTtlMs;
    for (const part of call.parts) {
      for (const value of part.append.entries) args[i++] = value;
    }

    return (this.redis as unknown as AppendCommand)[COMMAND_NAME](args);
  }

  private addRejected(entry: RejectedEntry, source: string, minId: string): Promise<string | null> {
    return this.redis.xadd(
      this.rejectedKey,
      "MINID",
      "~",
      minId,
      "*",
      "reason",
      entry.reason,
      "field",
      entry.field ?? "",
      "message",
      entry.message,
      "source",
      source,
      "event",
      entry.event,
    );
  }

  /**
   * Adds duplicates to the stats hash. The script cannot count them itself, because that
   * hash has no hash tag and lives in another Redis Cluster slot, so this is a second
   * round trip, made only when a window had duplicates. The events are stored by then,
   * so a failure here is logged and the requests still succeed. Engage duplicates were
   * counted as held at ingest, so they come off that count here.
   */
  private async countDuplicates(duplicates: number, engageDuplicates: number): Promise<void> {
    try {
      const pipeline = this.redis.pipeline().hincrby(this.statsKey, STAT.duplicate, duplicates);
      if (engageDuplicates > 0) pipeline.hincrby(this.statsKey, STAT.engageHeld, -engageDuplicates);
      await pipeline.exec();
    } catch (error) {
      this.logger.error({ err: error, duplicates }, "failed to count duplicates in the stats hash");
    }
  }
}
