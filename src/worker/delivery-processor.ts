import { DelayedError, UnrecoverableError, type Job } from "bullmq";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import type { Source } from "../config/sources.js";
import { DeliveryError } from "../errors/delivery-error.js";
import { LaneHolds } from "../batching/holds.js";
import { entryTimeMs } from "../batching/lane-buffer.js";
import { backoffDelayMs } from "../hydra/backoff.js";
import type { EventResult, HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import type { DeliveryMetrics } from "../metrics/delivery-metrics.js";
import { RedisKeys } from "../redis/keys.js";
import { STAT } from "../types.js";
import { deliveryJobOptions, type DeliveryQueue } from "./delivery-queue.js";
import type { DeliveryJobData, DeliveryJobResult, HydraRejection } from "./job-data.js";

export interface DeliveryProcessorOptions {
  config: Config;
  redis: Redis;
  queue: DeliveryQueue;
  hydraClient: HydraClient;
  logger: Logger;
  metrics: DeliveryMetrics;
}

type DeliveryJob = Job<DeliveryJobData, DeliveryJobResult>;

/** Events of a batch split by their outcome, each keeping its user. */
interface Outcome {
  delivered: number;
  rejected: { users: string[]; events: string[]; errors: (string | undefined)[]; status?: number };
  retryable: { users: string[]; events: string[]; lastError?: string };
}

/**
 * Sends one delivery job's events to Hydra and applies the response table. Accepted
 * events are done, and events Hydra rejected for good become a dead-letter job.
 * Retryable events of a 207 move to a retry job, and their users wait behind it.
 * Whole-request failures retry the job itself within HYDRA_RETRY_WINDOW.
 */
export class DeliveryProcessor {
  private readonly keys: RedisKeys;
  private readonly holds: LaneHolds;
  private readonly sources: Map<string, Source>;

  constructor(private readonly options: DeliveryProcessorOptions) {
    this.keys = new RedisKeys(options.config.redisPrefix);
    this.holds = new LaneHolds(options.redis, this.keys);
    this.sources = new Map(options.config.sources.map((source) => [source.name, source]));
  }

  async process(job: DeliveryJob, token?: string): Promise<DeliveryJobResult> {
    const log = this.options.logger.child({ jobId: job.id, lane: job.data.lane, attempt: job.attemptsMade + 1 });
    const source = this.sources.get(job.data.source);
    if (!source) {
      await this.deadLetter(job, { code: "unknown_source", error: `source "${job.data.source}" is not configured; add it to SOURCES_FILE and replay the job`, at: Date.now() });
    }

    await this.prepareAttempt(job, log);
    if (job.data.events.length === 0) {
      // A successor of a dead-lettered retry job: it only sends the parked events of its users.
      return this.settle(job, token, emptyOutcome(), log);
    }
    await this.waitForRateLimit(job, token);

    let result: Outcome;
    try {
      const results = await this.options.hydraClient.sendBatch({ apiKey: source!.hydraApiKey, idempotencyKey: job.id!, events: job.data.events });
      this.options.metrics.batchSize(job.data.count);
      result = splitOutcome(job.data, results);
    } catch (error) {
      return this.handleRequestFailure(job, token, error, log);
    }

    return this.settle(job, token, result, log);
  }

  /**
   * Clears the dead-letter mark of a replayed job, and fails a "rejected" job on its
   * first attempt with the error Hydra gave its events.
   */
  private async prepareAttempt(job: DeliveryJob, log: Logger): Promise<void> {
    if (job.data.deadLetter) {
      log.info({ deadLetter: job.data.deadLetter }, "dead-lettered job replayed");
      await job.updateData({ ...job.data, deadLetter: undefined, failingSince: undefined });
      return;
    }

    if (job.data.kind === "rejected" && job.data.rejection) {
      await this.deadLetter(job, job.data.rejection);
    }
  }

  /** Sends nothing to a Hydra API key before its Retry-After has passed. */
  private async waitForRateLimit(job: DeliveryJob, token?: string): Promise<void> {
    const until = Number(await this.options.redis.get(this.keys.rateLimitedSource(job.data.source)));
    if (!until || until <= Date.now()) return;

    await this.failIfWindowEnded(job, { code: "rate_limited", status: 429, error: "Hydra rate-limited the API key until the retry window ended", at: Date.now() });
    await job.moveToDelayed(until, token);
    throw new DelayedError();
  }

  private async handleRequestFailure(job: DeliveryJob, token: string | undefined, error: unknown, log: Logger): Promise<never> {
    if (!(error instanceof DeliveryError)) {
      log.error({ err: error }, "delivery failed with an unexpected error; retrying");
      throw error;
    }

    const rejection: HydraRejection = { status: error.status, code: error.code, error: error.message, at: Date.now() };
    const { redis, config, metrics } = this.options;

    if (error.code === "rate_limited") {
      const until = error.retryAtMs ?? Date.now() + 1_000;
      await redis.set(this.keys.rateLimitedSource(job.data.source), String(until), "PX", Math.max(1, until - Date.now()));
      await this.failIfWindowEnded(job, rejection);
      log.warn({ retryAt: new Date(until).toISOString() }, "Hydra returned 429; waiting for Retry-After");
      await job.moveToDelayed(until, token);
      throw new DelayedError();
    }

    if (error.code === "unauthorized") {
      // A revoked key fails every batch of the source; log it once per pause, not per batch.
      const first = await redis.set(this.keys.pausedSource(job.data.source), JSON.stringify({ status: error.status, since: Date.now() }), "NX");
      if (first === "OK") {
        log.error({ source: job.data.source, status: error.status }, "Hydra rejected the API key (401 or 403); delivery for this source is paused and retried every HYDRA_PAUSE_RETRY");
      }
      await job.moveToDelayed(Date.now() + config.pauseRetryMs, token);
      throw new DelayedError();
    }

    if (!error.retryable) {
      metrics.deadLettered(job.data.source, job.data.count);
      await this.deadLetter(job, rejection);
    }

    await this.failIfWindowEnded(job, rejection);
    await redis.hincrby(this.keys.stats(), STAT.retries, job.data.count);
    metrics.retried(job.data.source, job.data.count);
    log.warn({ code: error.code, status: error.status, err: error.message }, "delivery failed; retrying with backoff");
    throw error;
  }

  /**
   * Dead-letters the job once its run of failures has lasted HYDRA_RETRY_WINDOW, and
   * marks the start of a run at its first failure. Rate-limited waits count too, since
   * BullMQ does not count them as attempts and a key that returns 429 forever must still end.
   */
  private async failIfWindowEnded(job: DeliveryJob, rejection: HydraRejection): Promise<void> {
    if (!job.data.failingSince) {
      await job.updateData({ ...job.data, failingSince: Date.now() });
      return;
    }
    if (Date.now() - job.data.failingSince < this.options.config.retryWindowMs) return;

    this.options.metrics.deadLettered(job.data.source, job.data.count);
    await this.deadLetter(job, { ...rejection, error: `retry window of ${this.options.config.retryWindowMs} ms ended; last error: ${rejection.error}` });
  }

  /**
   * Marks the job as a dead letter and fails it without another attempt. The users a
   * retry job held pass to a successor job that sends their parked events, so a dead
   * letter never stops a user's later events.
   */
  private async deadLetter(job: DeliveryJob, rejection: HydraRejection): Promise<never> {
    if (job.data.kind === "retry") {
      const successorId = `${job.id}-d`;
      const users = [...new Set(job.data.users)];
      await this.options.queue.add("retry", eventsJob(job.data, "retry", users, []), deliveryJobOptions(this.options.config, successorId));
      await this.holds.hold(job.data.lane, users, successorId);
    }
    await job.updateData({ ...job.data, deadLetter: { ...rejection, attempts: job.attemptsMade + 1 } });
    await this.options.redis.hincrby(this.keys.stats(), STAT.deadLettered, job.data.count);
    this.options.logger.error(
      { jobId: job.id, lane: job.data.lane, events: job.data.count, status: rejection.status, code: rejection.code },
      `batch dead-lettered: ${rejection.error}`,
    );
    throw new UnrecoverableError(`${rejection.code}${rejection.status ? ` (${rejection.status})` : ""}: ${rejection.error}`);
  }

  /** Records what Hydra accepted and moves rejected and retryable events to jobs of their own. */
  private async settle(job: DeliveryJob, token: string | undefined, outcome: Outcome, log: Logger): Promise<DeliveryJobResult> {
    const { config, queue, redis, metrics } = this.options;
    const data = job.data;
    const result: DeliveryJobResult = { delivered: outcome.delivered, rejected: outcome.rejected.events.length, held: 0 };

    if (outcome.rejected.events.length > 0) {
      const rejectedId = `${job.id}-x${job.attemptsMade}`;
      await queue.add("rejected", eventsJob(data, "rejected", outcome.rejected.users, outcome.rejected.events, {
        status: outcome.rejected.status,
        code: "rejected_by_hydra",
        error: outcome.rejected.errors.find(Boolean) ?? "Hydra rejected the events",
        errors: outcome.rejected.errors,
        at: Date.now(),
      }), { ...deliveryJobOptions(config, rejectedId), attempts: 1 });
      log.warn({ rejectedJobId: rejectedId, events: outcome.rejected.events.length }, "Hydra rejected events for good; they wait in a dead-letter job");
    }

    if (data.kind === "retry") {
      return this.settleRetry(job, token, outcome, result, log);
    }

    if (outcome.retryable.events.length > 0) {
      // NOTE: a later event of the same user inside this batch that Hydra accepted is
      // already in Hydra, so it stays ahead of the retried one. Holds order events of
      // later batches only.
      const retryId = `${job.id}-r`;
      const delayMs = backoffDelayMs(1, config.backoffBaseMs, config.backoffMaxMs);
      await queue.add("retry", { ...eventsJob(data, "retry", outcome.retryable.users, outcome.retryable.events), failingSince: Date.now() }, deliveryJobOptions(config, retryId, delayMs));
      const users = new Set(outcome.retryable.users);
      await this.holds.hold(data.lane, users, retryId);
      result.held = users.size;
      result.retryJobId = retryId;
      metrics.retried(data.source, outcome.retryable.events.length);
      log.warn({ retryJobId: retryId, events: outcome.retryable.events.length, heldUsers: users.size }, "some events of the batch will be retried; their users are held");
    }

    await this.recordDelivered(data, outcome.delivered, data.entryIds);
    await redis.del(this.keys.pausedSource(data.source));
    return result;
  }

  /**
   * Finishes a retry job: once a held user's retried events went through, sends the
   * user's parked events, in order, then ends the hold. Events still failing stay in
   * this job, which retries with backoff.
   */
  private async settleRetry(job: DeliveryJob, token: string | undefined, first: Outcome, result: DeliveryJobResult, log: Logger): Promise<DeliveryJobResult> {
    const { config, hydraClient, redis } = this.options;
    const data = job.data;
    const source = this.sources.get(data.source)!;
    const jobId = job.id!;

    let outcome = first;
    let delivered = outcome.delivered;
    let round = 0;

    while (true) {
      const failingUsers = new Set(outcome.retryable.users);
      const heldUsers = [...new Set(data.users)].filter((user) => !failingUsers.has(user));

      const nextUsers: string[] = [];
      const nextEvents: string[] = [];
      const taken = new Map<string, number>();
      for (const user of heldUsers) {
        if (nextEvents.length >= config.maxBatchEvents) break;
        const parked = await this.holds.peekParked(data.lane, user, jobId, config.maxBatchEvents - nextEvents.length);
        if (!parked || parked.length === 0) continue;
        taken.set(user, parked.length);
        for (const event of parked) {
          nextUsers.push(user);
          nextEvents.push(event);
        }
      }

      if (nextEvents.length === 0) break;

      round++;
      let results: EventResult[];
      try {
        results = await hydraClient.sendBatch({ apiKey: source.hydraApiKey, idempotencyKey: `${jobId}-p${job.attemptsMade}-${round}`, events: nextEvents });
      } catch (error) {
        // Parked events stay parked; the job retries with only the events still failing.
        log.warn({ err: (error as Error).message }, "sending parked events failed; they stay parked");
        break;
      }

      const parkedOutcome = splitOutcome({ ...data, users: nextUsers, events: nextEvents }, results);
      for (const [user, count] of taken) await this.holds.commitParked(data.lane, user, count);
      delivered += parkedOutcome.delivered;
      outcome = {
        delivered: parkedOutcome.delivered,
        rejected: parkedOutcome.rejected,
        retryable: {
          users: [...outcome.retryable.users, ...parkedOutcome.retryable.users],
          events: [...outcome.retryable.events, ...parkedOutcome.retryable.events],
          lastError: parkedOutcome.retryable.lastError ?? outcome.retryable.lastError,
        },
      };
      if (parkedOutcome.rejected.events.length > 0) {
        await this.options.queue.add("rejected", eventsJob(data, "rejected", parkedOutcome.rejected.users, parkedOutcome.rejected.events, {
          status: parkedOutcome.rejected.status,
          code: "rejected_by_hydra",
          error: parkedOutcome.rejected.errors.find(Boolean) ?? "Hydra rejected the events",
          errors: parkedOutcome.rejected.errors,
          at: Date.now(),
        }), { ...deliveryJobOptions(config, `${jobId}-x${job.attemptsMade}-${round}`), attempts: 1 });
      }
    }

    await this.recordDelivered(data, delivered, []);
    await redis.del(this.keys.pausedSource(data.source));
    result.delivered = delivered;

    if (outcome.retryable.events.length === 0) return result;

    // Keep only the events still failing, so a later attempt resends nothing Hydra accepted.
    await job.updateData({
      ...data,
      users: outcome.retryable.users,
      events: outcome.retryable.events,
      count: outcome.retryable.events.length,
      bytes: outcome.retryable.events.reduce((sum, event) => sum + Buffer.byteLength(event) + 1, 64),
      failingSince: data.failingSince ?? Date.now(),
    });
    const error = new DeliveryError(outcome.retryable.lastError ?? "Hydra returned a retryable status for some events", "transient", true);
    return this.handleRequestFailure(job, token, error, log);
  }

  private async recordDelivered(data: DeliveryJobData, count: number, entryIds: string[]): Promise<void> {
    if (count === 0) return;

    const now = Date.now();
    const ages = entryIds.length > 0 ? entryIds.map((id) => now - entryTimeMs(id)) : [];
    this.options.metrics.delivered(data.source, count, ages);
    await this.options.redis.multi().hincrby(this.keys.stats(), STAT.delivered, count).hincrby(this.keys.stats(), STAT.batches, 1).exec();
  }
}

function emptyOutcome(): Outcome {
  return { delivered: 0, rejected: { users: [], events: [], errors: [] }, retryable: { users: [], events: [] } };
}

function splitOutcome(data: Pick<DeliveryJobData, "users" | "events">, results: EventResult[]): Outcome {
  const outcome = emptyOutcome();

  results.forEach((result, index) => {
    if (result.status === 200) {
      outcome.delivered++;
    } else if (result.retryable) {
      outcome.retryable.users.push(data.users[index]);
      outcome.retryable.events.push(data.events[index]);
      outcome.retryable.lastError = result.error ?? `status ${result.status}`;
    } else {
      outcome.rejected.users.push(data.users[index]);
      outcome.rejected.events.push(data.events[index]);
      outcome.rejected.errors.push(result.error ? `${result.status}: ${result.error}` : `status ${result.status}`);
      outcome.rejected.status ??= result.status;
    }
  });
  return outcome;
}

function eventsJob(parent: DeliveryJobData, kind: DeliveryJobData["kind"], users: string[], events: string[], rejection?: DeliveryJobData["rejection"]): DeliveryJobData {
  return {
    source: parent.source,
    lane: parent.lane,
    kind,
    entryIds: [],
    users,
    events,
    count: events.length,
    bytes: events.reduce((sum, event) => sum + Buffer.byteLength(event) + 1, 64),
    rejection,
  };
}
