import { EventEmitter } from "node:events";
import { QueueEvents } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { Logger } from "../logging/logger.js";
import { DELIVERY_GROUP, DELIVERY_QUEUE, RedisKeys } from "../redis/keys.js";
import { ENTRY_FIELD_EVENT, ENTRY_FIELD_USER } from "../types.js";
import { deliveryJobOptions, type DeliveryQueue } from "../worker/delivery-queue.js";
import { batchJobData } from "../worker/job-data.js";
import { LaneHolds } from "./holds.js";
import { LaneBuffer, type Batch, type LaneEntry } from "./lane-buffer.js";
import { LaneLeases } from "./lane-leases.js";
import { trimConsumedStream } from "./stream-trim.js";

export interface RouterOptions {
  config: Config;
  logger: Logger;
  queue: DeliveryQueue;
  /** Connection for XREADGROUP BLOCK; nothing else may use it. */
  readConnection: Redis;
  /** Connection for every other command. */
  commandConnection: Redis;
  consumerName: string;
  /** How long a lane lease lasts without renewal. @defaultValue 10000 */
  leaseTtlMs?: number;
  /** Longest XREADGROUP BLOCK, which bounds how late a lane freed meanwhile is read. @defaultValue 50 */
  maxBlockMs?: number;
  /** How often lane streams are trimmed. @defaultValue 30000 */
  trimIntervalMs?: number;
}

interface LaneState {
  lane: string;
  source: string;
  stream: string;
  buffer: LaneBuffer;
  /** Job id of the lane's job in flight; the next batch waits for it to finish. */
  inFlight?: string;
  hasHolds: boolean;
  dispatching: boolean;
}

type RouterEvents = {
  "batch:queued": [{ lane: string; jobId: string; count: number }];
  "lane:acquired": [{ lane: string; recovered: number }];
  "lane:released": [{ lane: string }];
  error: [Error];
};

/**
 * Reads lane streams with the consumer group and turns them into delivery jobs, one job
 * of a lane in flight at a time. Stream entries are acknowledged only after their job
 * exists. The job id is the lane and the first entry id, so entries read again after a
 * crash never make a second job.
 */
export class Router extends EventEmitter<RouterEvents> {
  private readonly keys: RedisKeys;
  private readonly leases: LaneLeases;
  private readonly holds: LaneHolds;
  private readonly log: Logger;
  private readonly owned = new Map<string, LaneState>();
  private readonly streamToLane = new Map<string, string>();
  private readonly inFlightJobs = new Map<string, string>();
  private readonly adopting = new Set<string>();
  private lastReportedLanes = 0;
  private readonly allLanes: { lane: string; source: string }[] = [];
  private readonly leaseTtlMs: number;
  private readonly maxBlockMs: number;
  private queueEvents?: QueueEvents;
  private queueEventsConnection?: Redis;
  private closing = false;
  private readLoop?: Promise<void>;
  private timers: NodeJS.Timeout[] = [];
  private leaseTick?: Promise<void>;

  constructor(private readonly options: RouterOptions) {
    super();
    this.keys = new RedisKeys(options.config.redisPrefix);
    this.leaseTtlMs = options.leaseTtlMs ?? 10_000;
    this.maxBlockMs = options.maxBlockMs ?? 50;
    this.leases = new LaneLeases(options.commandConnection, this.keys, options.consumerName, this.leaseTtlMs);
    this.holds = new LaneHolds(options.commandConnection, this.keys);
    this.log = options.logger.child({ component: "router", consumer: options.consumerName });

    for (const source of options.config.sources) {
      for (let partition = 0; partition < options.config.partitions; partition++) {
        this.allLanes.push({ lane: this.keys.laneId(source.name, partition), source: source.name });
      }
    }
  }

  /** Lanes this router owns now. */
  get lanes(): string[] {
    return [...this.owned.keys()];
  }

  async start(): Promise<void> {
    const { config } = this.options;
    this.queueEventsConnection = this.options.readConnection.duplicate();
    this.queueEvents = new QueueEvents(DELIVERY_QUEUE, {
      connection: this.queueEventsConnection,
      prefix: this.keys.bullPrefix(),
    });
    this.queueEvents.on("completed", ({ jobId }) => this.onJobFinished(jobId));
    this.queueEvents.on("failed", ({ jobId }) => this.onJobFinished(jobId));
    await this.queueEvents.waitUntilReady();

    await this.runLeaseTick();
    this.timers.push(setInterval(() => void this.runLeaseTick(), Math.max(100, Math.floor(this.leaseTtlMs / 3))));
    this.timers.push(setInterval(() => void this.pollInFlight(), 1_000));
    this.timers.push(setInterval(() => void this.trimOwnedStreams(), this.options.trimIntervalMs ?? 30_000));

    this.readLoop = this.runReadLoop();
    this.log.info({ lanes: this.allLanes.length, lingerMs: config.lingerMs, maxBatchEvents: config.maxBatchEvents }, "router started");
  }

  /**
   * Stops reading and gives up every lane. Buffered entries stay pending in their
   * streams, where the next owner claims them; jobs already added stay in BullMQ.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;

    for (const timer of this.timers) clearInterval(timer);
    const failures: unknown[] = [];
    const step = async (name: string, action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (error) {
        failures.push(error);
        this.log.error({ err: error, step: name }, "router close step failed");
      }
    };

    await step("read loop", async () => this.readLoop);
    await step("lease tick", async () => this.leaseTick);
    await step("lane dispatches", async () => this.waitForDispatches());
    for (const lane of [...this.owned.keys()]) {
      await step(`release ${lane}`, () => this.releaseLane(lane));
    }
    await step("leave", () => this.leases.leave());
    await step("queue events", async () => {
      await this.queueEvents?.close();
      this.queueEventsConnection?.disconnect();
    });
    this.log.info({ failures: failures.length }, "router stopped");
  }

  private async waitForDispatches(): Promise<void> {
    while ([...this.owned.values()].some((state) => state.dispatching)) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private runLeaseTick(): Promise<void> {
    if (this.leaseTick || this.closing) return this.leaseTick ?? Promise.resolve();
    this.leaseTick = this.balanceLanes()
      .catch((error) => this.log.error({ err: error }, "lane lease update failed; retrying at the next tick"))
      .finally(() => {
        this.leaseTick = undefined;
      });
    return this.leaseTick;
  }

  /** Renews owned leases, then takes or gives up lanes so routers share them evenly. */
  private async balanceLanes(): Promise<void> {
    const routers = await this.leases.heartbeat(Date.now());
    const quota = Math.ceil(this.allLanes.length / Math.max(1, routers));

    const lost = await this.leases.renew([...this.owned.keys()]);
    for (const lane of lost) {
      this.log.warn({ lane }, "lane lease lost; another router owns the lane now");
      this.dropLane(lane);
    }

    if (this.owned.size < quota) {
      const candidates = this.allLanes.filter(({ lane }) => !this.owned.has(lane));
      shuffle(candidates);
      for (const { lane, source } of candidates) {
        if (this.owned.size >= quota || this.closing) break;
        if (await this.leases.acquire(lane)) {
          this.adopting.add(lane);
          try {
            await this.adoptLane(lane, source);
          } finally {
            this.adopting.delete(lane);
          }
        }
      }
    }

    if (this.owned.size !== this.lastReportedLanes) {
      this.lastReportedLanes = this.owned.size;
      this.log.info({ lanes: this.owned.size, routers, quota }, "lanes owned by this router");
    }

    if (this.owned.size > quota) {
      for (const state of [...this.owned.values()]) {
        if (this.owned.size <= quota) break;
        if (!state.inFlight && state.buffer.size === 0 && !state.dispatching) {
          await this.releaseLane(state.lane);
        }
      }
    }
  }

  /**
   * Takes over a lane: creates the consumer group, claims entries that an earlier owner
   * left pending, and skips those already in a job.
   */
  private async adoptLane(lane: string, source: string): Promise<void> {
    const { config, commandConnection: redis, queue, consumerName } = this.options;
    const stream = this.keys.laneStream(lane);

    try {
      await redis.xgroup("CREATE", stream, DELIVERY_GROUP, "0", "MKSTREAM");
    } catch (error) {
      if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
    }

    const claimed: LaneEntry[] = [];
    let cursor = "0-0";
    do {
      const [next, entries, deleted] = (await redis.xautoclaim(stream, DELIVERY_GROUP, consumerName, 0, cursor, "COUNT", 1_000)) as [
        string,
        [string, string[]][],
        string[]?,
      ];
      cursor = next;
      for (const [id, fields] of entries) claimed.push(toLaneEntry(id, fields));
      if (deleted && deleted.length > 0) {
        this.log.error({ lane, entries: deleted.length }, "pending entries were trimmed from the stream before delivery");
        await redis.xack(stream, DELIVERY_GROUP, ...deleted);
      }
    } while (cursor !== "0-0");

    const state: LaneState = {
      lane,
      source,
      stream,
      buffer: new LaneBuffer(config.maxBatchEvents, config.maxBatchBytes),
      hasHolds: (await this.holds.heldCount(lane)) > 0,
      dispatching: false,
    };

    let pending = claimed;
    while (pending.length > 0) {
      const jobId = batchJobId(lane, pending[0].id);
      const job = await queue.getJob(jobId);
      if (!job) break;

      const inJob = new Set(job.data.entryIds);
      await redis.xack(stream, DELIVERY_GROUP, ...job.data.entryIds);
      pending = pending.filter((entry) => !inJob.has(entry.id));
      const jobState = await job.getState();
      if (jobState !== "completed" && jobState !== "failed") {
        state.inFlight = jobId;
        this.inFlightJobs.set(jobId, lane);
      }
    }
    for (const entry of pending) state.buffer.push(entry);

    this.owned.set(lane, state);
    this.streamToLane.set(stream, lane);
    this.log.debug({ lane, recovered: claimed.length }, "lane acquired");
    if (claimed.length > 0) this.log.info({ lane, recovered: claimed.length }, "lane acquired with pending entries of an earlier owner");
    this.emit("lane:acquired", { lane, recovered: claimed.length });
  }

  private dropLane(lane: string): void {
    const state = this.owned.get(lane);
    if (!state) return;
    state.buffer.clear();
    if (state.inFlight) this.inFlightJobs.delete(state.inFlight);
    this.owned.delete(lane);
    this.streamToLane.delete(state.stream);
  }

  private async releaseLane(lane: string): Promise<void> {
    this.dropLane(lane);
    await this.leases.release(lane);
    this.log.debug({ lane }, "lane released");
    this.emit("lane:released", { lane });
  }

  private async runReadLoop(): Promise<void> {
    const { readConnection, consumerName, config } = this.options;

    while (!this.closing) {
      try {
        const waitMs = this.dispatchDueLanes();
        const readable = [...this.owned.values()].filter((state) => state.buffer.size < config.maxBatchEvents);
        const blockMs = Math.max(1, Math.min(this.maxBlockMs, waitMs));

        if (readable.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, blockMs));
          continue;
        }

        const streams = readable.map((state) => state.stream);
        const reply = (await readConnection.xreadgroup(
          "GROUP",
          DELIVERY_GROUP,
          consumerName,
          "COUNT",
          config.maxBatchEvents,
          "BLOCK",
          blockMs,
          "STREAMS",
          ...streams,
          ...streams.map(() => ">"),
        )) as [string, [string, string[]][]][] | null;

        for (const [stream, entries] of reply ?? []) {
          const state = this.owned.get(this.streamToLane.get(stream) ?? "");
          if (!state) continue;
          for (const [id, fields] of entries) state.buffer.push(toLaneEntry(id, fields));
        }
      } catch (error) {
        if (this.closing) break;
        const message = String((error as Error).message);
        if (message.includes("NOGROUP")) {
          // A stream deleted under a live router (by an operator) loses its group; adopt again.
          this.log.warn({ err: error }, "consumer group missing; lanes will be adopted again");
          for (const lane of [...this.owned.keys()]) await this.releaseLane(lane).catch(() => {});
        } else {
          this.log.error({ err: error }, "reading lane streams failed; retrying in 1s");
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  /**
   * Starts a dispatch for every lane whose batch is due: no job in flight, and a full
   * batch or an oldest entry older than the linger time. Returns milliseconds until the
   * next lane becomes due.
   */
  private dispatchDueLanes(): number {
    const { lingerMs } = this.options.config;
    const now = Date.now();
    let waitMs = Number.POSITIVE_INFINITY;

    for (const state of this.owned.values()) {
      if (state.inFlight || state.dispatching || state.buffer.size === 0) continue;
      const dueAt = state.buffer.isFull() ? now : (state.buffer.oldestEntryTimeMs ?? now) + lingerMs;
      if (dueAt <= now) {
        void this.dispatch(state);
      } else {
        waitMs = Math.min(waitMs, dueAt - now);
      }
    }
    return waitMs;
  }

  private async dispatch(state: LaneState): Promise<void> {
    state.dispatching = true;
    try {
      let batch = state.buffer.takeBatch();
      if (!batch) return;
      if (state.hasHolds) batch = await this.parkHeldUsers(state, batch);
      if (batch.entries.length === 0) return;
      if (!this.owned.has(state.lane)) return;

      const jobId = batchJobId(state.lane, batch.entries[0].id);
      const data = batchJobData(state.source, state.lane, "batch", batch);

      state.inFlight = jobId;
      this.inFlightJobs.set(jobId, state.lane);
      await this.options.queue.add("batch", data, deliveryJobOptions(this.options.config, jobId));
      await this.options.commandConnection.xack(state.stream, DELIVERY_GROUP, ...data.entryIds);
      this.emit("batch:queued", { lane: state.lane, jobId, count: data.count });
    } catch (error) {
      // The entries stay pending in the stream; dropping the lane lets adoption claim them again.
      this.log.error({ err: error, lane: state.lane }, "adding a delivery job failed; the lane will be adopted again");
      this.dropLane(state.lane);
      await this.leases.release(state.lane).catch(() => {});
    } finally {
      state.dispatching = false;
    }
  }

  private async parkHeldUsers(state: LaneState, batch: Batch): Promise<Batch> {
    const { parked, heldCount } = await this.holds.park(state.lane, DELIVERY_GROUP, batch.entries);
    state.hasHolds = heldCount > 0;
    if (parked.size === 0) return batch;

    this.log.debug({ lane: state.lane, parked: parked.size }, "events of held users parked behind their retry");
    const entries = batch.entries.filter((_, index) => !parked.has(index));
    const bytes = entries.reduce((sum, entry) => sum + entry.bytes + 1, 64);
    return { entries, bytes };
  }

  private onJobFinished(jobId: string): void {
    const lane = this.inFlightJobs.get(jobId);
    if (!lane) return;

    const state = this.owned.get(lane);
    if (!state) {
      // A lane being adopted is not in `owned` yet; the next poll finishes its job.
      if (!this.adopting.has(lane)) this.inFlightJobs.delete(jobId);
      return;
    }
    this.inFlightJobs.delete(jobId);
    if (state.inFlight !== jobId) return;
    state.inFlight = undefined;

    // A finished job may have held users behind a retry job; check before the next batch.
    void this.holds
      .heldCount(lane)
      .then((count) => {
        state.hasHolds = count > 0;
        this.dispatchDueLanes();
      })
      .catch((error) => {
        state.hasHolds = true;
        this.log.error({ err: error, lane }, "reading held users failed");
        this.dispatchDueLanes();
      });
  }

  /** Catches finished jobs whose event the QueueEvents stream did not deliver. */
  private async pollInFlight(): Promise<void> {
    for (const jobId of [...this.inFlightJobs.keys()]) {
      try {
        const jobState = await this.options.queue.getJobState(jobId);
        if (jobState === "completed" || jobState === "failed" || jobState === "unknown") this.onJobFinished(jobId);
      } catch (error) {
        this.log.debug({ err: error, jobId }, "reading a job state failed");
      }
    }
  }

  private async trimOwnedStreams(): Promise<void> {
    for (const state of this.owned.values()) {
      try {
        await trimConsumedStream(this.options.commandConnection, state.stream, DELIVERY_GROUP, this.options.config.streamRetentionMs);
      } catch (error) {
        this.log.warn({ err: error, lane: state.lane }, "trimming a lane stream failed");
      }
    }
  }
}

/** Job id of a lane batch: the lane and its first stream entry id (BullMQ refuses ':'). */
export function batchJobId(lane: string, firstEntryId: string): string {
  return `${lane}-${firstEntryId}`;
}

function toLaneEntry(id: string, fields: string[]): LaneEntry {
  let user = "";
  let event = "";
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === ENTRY_FIELD_USER) user = fields[i + 1];
    else if (fields[i] === ENTRY_FIELD_EVENT) event = fields[i + 1];
  }
  return { id, user, event, bytes: Buffer.byteLength(event) };
}

function shuffle<T>(items: T[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}
