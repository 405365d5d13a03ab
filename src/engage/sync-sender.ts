import type { Redis } from "ioredis";

import type { HydraClient } from "../hydra/types.js";
import type { Logger } from "../logging/logger.js";
import type { EngageKeys } from "./keys.js";
import { batchIdempotencyKey, packBatches, type PackedEvent } from "./sync-events.js";
import type { SyncPage } from "./sync-page.js";
import { recordBatch, type BatchOutcome, type MemberError } from "./sync-state.js";

export interface SenderContext {
  redis: Redis;
  keys: EngageKeys;
  hydraClient: HydraClient;
  apiKey: string;
  audience: string;
  isMembership: boolean;
  syncNumber: number;
  maxBatchEvents: number;
  maxBatchBytes: number;
  log: Logger;
  nowMs(): number;
}

/**
 * Sends the events of successive pages in full batches and records each batch's
 * outcome. Events of several pages share a batch, so a sync of C changes sends about
 * C / BATCH_MAX_EVENTS requests whatever the page sizes.
 *
 * Each record stores the HSCAN cursor after the last page whose events are all
 * recorded, so a resumed sync rescans at most the pages still in the buffer. Members of
 * those pages that were recorded have left `pending` or are marked rejected in this
 * sync, so they are not sent again.
 */
export class BatchSender {
  sent = 0;
  failed = 0;
  /** True once a later sync of the audience took over; the caller stops. */
  superseded = false;

  private buffer: PackedEvent[] = [];
  private tooLarge: { member: string; error: MemberError }[] = [];
  /** End of each page not yet fully recorded: its next cursor and the events produced up to it. */
  private pageEnds: { cursor: string; produced: number }[] = [];
  private produced = 0;
  private recorded = 0;

  constructor(private readonly context: SenderContext) {}

  /** Adds a page and sends every batch that is full. */
  async addPage(page: SyncPage): Promise<void> {
    this.buffer.push(...page.events);
    this.tooLarge.push(...page.tooLarge);
    this.produced += page.events.length;
    this.pageEnds.push({ cursor: page.nextCursor, produced: this.produced });

    const batches = packBatches(this.buffer, this.context.maxBatchEvents, this.context.maxBatchBytes);
    for (const batch of batches.slice(0, -1)) {
      await this.send(batch);
      if (this.superseded) return;
    }
    this.buffer = batches.at(-1) ?? [];
  }

  /** Sends what is left, and records rejections that had no batch to go with. */
  async flush(): Promise<void> {
    for (const batch of packBatches(this.buffer, this.context.maxBatchEvents, this.context.maxBatchBytes)) {
      await this.send(batch);
      if (this.superseded) return;
    }
    this.buffer = [];

    if (this.tooLarge.length > 0) await this.record({ delivered: [], rejected: [] });
  }

  private async send(batch: PackedEvent[]): Promise<void> {
    const { hydraClient, apiKey, syncNumber, nowMs, log } = this.context;
    const results = await hydraClient.sendBatch({ apiKey, idempotencyKey: batchIdempotencyKey(batch), events: batch.map((event) => event.json) });

    const outcome: BatchOutcome = { delivered: [], rejected: [] };
    batch.forEach((event, position) => {
      const result = results[position];
      if (result?.status === 200) {
        outcome.delivered.push({ member: event.member, valueJson: event.valueJson });
        return;
      }

      const status = result?.status ?? 0;
      const message = result?.error ?? (result ? `Hydra responded with status ${status}` : "Hydra returned no result for the event");
      outcome.rejected.push({ member: event.member, error: { syncNumber, status, code: result?.code, error: message, retryable: result?.retryable ?? true, at: nowMs() } });
    });

    if (outcome.rejected.length > 0) {
      const first = outcome.rejected[0].error;
      log.warn({ rejected: outcome.rejected.length, status: first.status, error: first.error }, "Hydra rejected events of a sync; their users stay pending");
    }

    this.recorded += batch.length;
    await this.record(outcome);
  }

  private async record(outcome: BatchOutcome): Promise<void> {
    outcome.rejected.push(...this.tooLarge);
    this.tooLarge = [];

    while (this.pageEnds.length > 0 && this.pageEnds[0].produced <= this.recorded) {
      outcome.nextCursor = this.pageEnds.shift()?.cursor;
    }

    const { redis, keys, audience, isMembership, syncNumber } = this.context;
    const running = await recordBatch(redis, keys, audience, isMembership, syncNumber, outcome);
    this.sent += outcome.delivered.length;
    this.failed += outcome.rejected.length;
    if (!running) this.superseded = true;
  }
}
