import { EventEmitter, once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Worker } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import { createRedis } from "../redis/connection.js";
import { systemClock, type Clock } from "./clock.js";
import { EngageConsumer } from "./consumer.js";
import { SyncScheduler } from "./scheduler.js";
import { createSyncQueue, startSyncWorker, type SyncQueue } from "./sync-queue.js";
import type { SyncJobData, SyncResult } from "./sync-runner.js";
import type { SyncKind } from "./sync-state.js";

/**
 * Parts of the Engage service. "consumer" reads the Engage streams into the audience
 * state, "scheduler" turns due syncs into jobs, "worker" runs the sync jobs.
 * `hydra-sync start` runs all three, and `hydra-sync scheduler` can run ["scheduler"] alone.
 */
export type EngageRole = "consumer" | "scheduler" | "worker";

export interface EngageServiceOptions {
  config: Config;
  /** Connection for commands; the service creates one from REDIS_URL when omitted, and closes only what it created. */
  redis?: Redis;
  logger: Logger;
  /** Required when the roles include "worker". */
  hydraClient?: HydraClient;
  clock?: Clock;
  /** How often the scheduler looks for due syncs, in ms. @defaultValue 1000 */
  tickIntervalMs?: number;
  /** @defaultValue ["consumer", "scheduler", "worker"] */
  roles?: EngageRole[];
  /**
   * When false, the stream consumer and the scheduler run only when consumeOnce() and
   * tick() are called, which tests with a fake clock need. @defaultValue true
   */
  runLoops?: boolean;
  /** Source of the sync interval draws, uniform in [0, 1). @defaultValue Math.random */
  random?: () => number;
}

/** Payload of the 'sync:completed' event. */
export interface SyncCompletedEvent {
  source: string;
  audience: string;
  syncNumber: number;
  sent: number;
  failed: number;
  kind: SyncKind;
}

/** Payload of the 'sync:failed' event, emitted for every failed attempt. */
export interface SyncFailedEvent {
  source: string;
  audience: string;
  syncNumber: number;
  error: string;
  /** False after the last attempt: the sync is marked failed and its members wait for the next sync. */
  willRetry: boolean;
}

export interface EngageService {
  /** Emits 'sync:completed' (SyncCompletedEvent) and 'sync:failed' (SyncFailedEvent) for syncs this process runs. */
  events: EventEmitter;
  /** The `engage-sync` queue, for Bull Board. */
  queue: SyncQueue;
  /** Claims due syncs and adds their jobs; returns the number of jobs added. Needs the "scheduler" role. */
  tick(): Promise<number>;
  /** Reads and applies the Engage entries waiting now, without blocking; returns how many. Needs the "consumer" role. */
  consumeOnce(): Promise<number>;
  /** Stops the loops and the worker (waiting for running syncs) and closes the connections it opened. Safe to call twice. */
  close(): Promise<void>;
}

const DEFAULT_TICK_INTERVAL_MS = 1_000;
const CONSUMER_BLOCK_MS = 1_000;
const LOOP_ERROR_PAUSE_MS = 1_000;

/**
 * Starts the Engage audience sync: consumes the Engage stream of every source, runs the
 * scheduler tick loop and the `engage-sync` BullMQ worker, as the roles select.
 *
 * @throws Error when the roles include "worker" and no hydraClient is given.
 */
export async function startEngageService(options: EngageServiceOptions): Promise<EngageService> {
  const { config, logger } = options;
  const roles = new Set<EngageRole>(options.roles ?? ["consumer", "scheduler", "worker"]);
  const clock = options.clock ?? systemClock;
  const runLoops = options.runLoops ?? true;
  const log = logger.child({ component: "engage" });

  if (roles.has("worker") && !options.hydraClient) {
    throw new Error("startEngageService: the worker role needs a hydraClient; pass one or leave out the worker role.");
  }

  const owned: Redis[] = [];
  const open = (): Redis => {
    const connection = createRedis(config.redisUrl);
    connection.on("error", (error) => log.debug({ err: error }, "Redis connection error; ioredis reconnects"));
    owned.push(connection);
    return connection;
  };

  const redis = options.redis ?? open();
  const queue = createSyncQueue(config, redis);
  const events = new EventEmitter();
  const abort = new AbortController();
  const loops: Promise<void>[] = [];

  const consumer = new EngageConsumer({ redis, config, logger: log, clock });
  const scheduler = new SyncScheduler({ redis, config, logger: log, clock, queue, random: options.random });
  let worker: Worker<SyncJobData, SyncResult> | undefined;

  try {
    if (roles.has("consumer")) await consumer.ensureGroups();
    if (roles.has("scheduler")) await scheduler.registerSchedules();
  } catch (error) {
    // Close what this call opened, so a failed start leaves no connection behind.
    await queue.close();
    for (const connection of owned) connection.disconnect();
    throw error;
  }

  if (roles.has("worker") && options.hydraClient) {
    worker = startSyncWorker({
      redis,
      config,
      logger: log,
      clock,
      hydraClient: options.hydraClient,
      connection: open(),
      onCompleted: (result) => {
        const event: SyncCompletedEvent = { source: result.source, audience: result.audience, syncNumber: result.syncNumber, sent: result.sent, failed: result.failed, kind: result.kind };
        events.emit("sync:completed", event);
      },
      onFailed: (data, error, willRetry) => {
        log.error({ err: error, source: data.source, audience: data.audience, syncNumber: data.syncNumber, willRetry }, "Engage sync attempt failed");
        const event: SyncFailedEvent = { source: data.source, audience: data.audience, syncNumber: data.syncNumber, error: error.message, willRetry };
        events.emit("sync:failed", event);
      },
    });
    worker.on("error", (error) => log.error({ err: error }, "Engage sync worker error"));
  }

  if (runLoops && roles.has("consumer")) {
    const blocking = open();
    loops.push(
      runLoop("Engage stream consumer", log, abort.signal, async () => {
        const processed = await consumer.consumeOnce();
        if (processed === 0) await consumer.consumeBlocking(blocking, CONSUMER_BLOCK_MS);
      }),
    );
    // Closing the blocking connection ends a pending XREADGROUP BLOCK at once.
    abort.signal.addEventListener("abort", () => blocking.disconnect());
  }

  if (runLoops && roles.has("scheduler")) {
    const tickIntervalMs = options.tickIntervalMs ?? DEFAULT_TICK_INTERVAL_MS;
    loops.push(
      runLoop("Engage sync scheduler", log, abort.signal, async () => {
        await scheduler.tick();
        await sleep(tickIntervalMs, undefined, { signal: abort.signal }).catch(() => undefined);
      }),
    );
  }

  log.info({ roles: [...roles], sources: config.sources.map((source) => source.name) }, "Engage service started");

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      abort.abort();
      await Promise.all(loops);
      await worker?.close();
      if (roles.has("consumer")) await consumer.removeIfIdle().catch((error) => log.warn({ err: error }, "could not remove the Engage consumer from its group"));
      await queue.close();
      await Promise.all(owned.map((connection) => connection.quit().catch(() => connection.disconnect())));
      log.info("Engage service stopped");
    })();
    return closing;
  };

  return {
    events,
    queue,
    tick: () => scheduler.tick(),
    consumeOnce: () => consumer.consumeOnce(),
    close,
  };
}

/**
 * Waits for the next 'sync:completed' event that matches, for example the demo's
 * initial and delta sync of one audience.
 *
 * @throws Error when none arrives within `timeoutMs`.
 */
export async function waitForSync(
  events: EventEmitter,
  match: Partial<Pick<SyncCompletedEvent, "source" | "audience" | "kind" | "syncNumber">> = {},
  timeoutMs = 60_000,
): Promise<SyncCompletedEvent> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    for (;;) {
      const [event] = (await once(events, "sync:completed", { signal })) as [SyncCompletedEvent];
      const matches = Object.entries(match).every(([field, value]) => event[field as keyof SyncCompletedEvent] === value);
      if (matches) return event;
    }
  } catch (error) {
    if (signal.aborted) throw new Error(`No Engage sync matching ${JSON.stringify(match)} completed within ${timeoutMs} ms.`);
    throw error;
  }
}

/**
 * Runs `step` until the signal aborts. A failing step is logged (once per distinct
 * message, then counted) and retried after a pause.
 */
async function runLoop(name: string, log: Logger, signal: AbortSignal, step: () => Promise<void>): Promise<void> {
  let lastMessage: string | undefined;
  let repeats = 0;

  while (!signal.aborted) {
    try {
      await step();
      if (lastMessage !== undefined) log.info({ loop: name, failures: repeats + 1 }, `${name} recovered`);
      lastMessage = undefined;
      repeats = 0;
    } catch (error) {
      if (signal.aborted) break;

      const message = error instanceof Error ? error.message : String(error);
      if (message === lastMessage) repeats += 1;
      else log.error({ err: error, loop: name }, `${name} failed; retrying in ${LOOP_ERROR_PAUSE_MS} ms`);
      lastMessage = message;
      await sleep(LOOP_ERROR_PAUSE_MS, undefined, { signal }).catch(() => undefined);
    }
  }
}
