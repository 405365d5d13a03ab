import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

import type { Config } from "../config/env.js";
import type { Logger } from "../logging/logger.js";
import type { AudienceSummary, ListAudiences } from "../ops/audiences.js";
import { readHeldSources, type HeldSource } from "../ops/paused-sources.js";
import { readQueueCounts, type QueueCounts } from "../ops/queues.js";
import { readStreams, type StreamState } from "../ops/streams.js";
import { RedisKeys } from "../redis/keys.js";
import { STAT } from "../types.js";
import { BATCH_SIZE_BUCKETS, DELIVERY_LATENCY_BUCKETS_SECONDS } from "./buckets.js";
import { parseDeliveryMetrics, type DeliveryMetricsSnapshot } from "./delivery-metrics-hash.js";
import { StoredHistogram } from "./stored-histogram.js";

export interface ServiceMetricsOptions {
  redis: Redis;
  config: Config;
  /** Queues whose job counts are exposed. */
  queues: Queue[];
  listAudiences?: ListAudiences;
  logger?: Logger;
}

/** Everything one scrape reads from Redis. */
interface ServiceSnapshot {
  stats: Record<string, string>;
  delivery: DeliveryMetricsSnapshot;
  streams: StreamState[];
  held: HeldSource[];
  queues: QueueCounts[];
  audiences: AudienceSummary[] | undefined;
}

/**
 * Service-wide metrics for the admin server's /metrics, read from Redis at scrape time:
 * the stats hash that producers write, the delivery metrics hash that workers flush, the
 * streams' consumer groups, paused sources, BullMQ job counts and Engage audiences. The
 * admin process's own Node.js metrics come with them, prefixed hydra_sync_.
 */
export class ServiceMetrics {
  private readonly processRegistry = new Registry();

  constructor(private readonly options: ServiceMetricsOptions) {
    collectDefaultMetrics({ register: this.processRegistry, prefix: "hydra_sync_" });
  }

  get contentType(): string {
    return this.processRegistry.contentType;
  }

  /**
   * Reads Redis and returns the metrics in Prometheus text format.
   *
   * @throws the Redis error when Redis cannot be read; a failing audience list is logged
   * and left out instead.
   */
  async render(): Promise<string> {
    const snapshot = await this.readSnapshot();
    const registry = new Registry();
    this.addIngestMetrics(registry, snapshot.stats);
    this.addDeliveryMetrics(registry, snapshot.delivery);
    this.addStreamMetrics(registry, snapshot.streams);
    this.addSourceMetrics(registry, snapshot.held);
    this.addQueueMetrics(registry, snapshot.queues);
    this.addAudienceMetrics(registry, snapshot.audiences);
    return Registry.merge([this.processRegistry, registry]).metrics();
  }

  private async readSnapshot(): Promise<ServiceSnapshot> {
    const { redis, config, queues } = this.options;
    const keys = new RedisKeys(config.redisPrefix);
    const [stats, delivery, streams, held, queueCounts, audiences] = await Promise.all([
      redis.hgetall(keys.stats()),
      redis.hgetall(keys.deliveryMetrics()),
      readStreams(redis, config),
      readHeldSources(redis, config),
      readQueueCounts(queues),
      this.readAudiences(),
    ]);
    return { stats, delivery: parseDeliveryMetrics(delivery), streams, held, queues: queueCounts, audiences };
  }

  private async readAudiences(): Promise<AudienceSummary[] | undefined> {
    const { listAudiences, redis, config, logger } = this.options;
    if (!listAudiences) return undefined;
    try {
      return await listAudiences(redis, config);
    } catch (error) {
      logger?.warn({ err: error }, "could not list Engage audiences for /metrics; leaving them out of this scrape");
      return undefined;
    }
  }

  private addIngestMetrics(registry: Registry, stats: Record<string, string>): void {
    const counter = (name: string, help: string, labelNames: string[] = []) =>
      new Counter({ name, help, labelNames, registers: [registry] });

    const accepted = counter("hydra_sync_events_accepted_total", "Events the producers stored in a lane stream.");
    const duplicate = counter("hydra_sync_events_duplicate_total", "Events dropped because their messageId was seen within DEDUPE_WINDOW.");
    const engageHeld = counter("hydra_sync_events_engage_held_total", "Engage audience identifies held for the audience sync instead of a lane stream.");
    const rejected = counter("hydra_sync_events_rejected_total", "Events the producers rejected, by reason.", ["reason"]);
    const filtered = counter("hydra_sync_events_filtered_total", "Events accepted and not stored for Hydra, by reason.", ["reason"]);

    accepted.inc(Number(stats[STAT.accepted] ?? 0));
    duplicate.inc(Number(stats[STAT.duplicate] ?? 0));
    engageHeld.inc(Number(stats[STAT.engageHeld] ?? 0));

    for (const [field, value] of Object.entries(stats)) {
      const separator = field.indexOf(":");
      if (separator < 0) continue;

      const reason = field.slice(separator + 1);
      if (field === STAT.rejected(reason)) rejected.inc({ reason }, Number(value));
      else if (field === STAT.filtered(reason)) filtered.inc({ reason }, Number(value));
    }
  }

  private addDeliveryMetrics(registry: Registry, delivery: DeliveryMetricsSnapshot): void {
    const bySource = (name: string, help: string, values: Map<string, number>) => {
      const counter = new Counter({ name, help, labelNames: ["source"], registers: [registry] });
      for (const [source, value] of values) counter.inc({ source }, value);
    };

    bySource("hydra_sync_events_delivered_total", "Events Hydra accepted, by source.", delivery.counters.delivered);
    bySource("hydra_sync_events_retried_total", "Events scheduled for another attempt after a retryable failure, by source.", delivery.counters.retried);
    bySource("hydra_sync_events_dead_lettered_total", "Events whose delivery job ended failed, by source.", delivery.counters.dead_lettered);

    const batchSize = new StoredHistogram("hydra_sync_batch_size_events", "Events per batch sent to Hydra.", BATCH_SIZE_BUCKETS);
    if (delivery.batchSize.buckets.size > 0) batchSize.add({}, delivery.batchSize);
    registry.registerMetric(batchSize as never);

    const latency = new StoredHistogram(
      "hydra_sync_delivery_latency_seconds",
      "Seconds from an event's receivedAt to Hydra accepting it, by source.",
      DELIVERY_LATENCY_BUCKETS_SECONDS,
    );
    for (const [source, data] of delivery.latencyBySource) latency.add({ source }, data);
    registry.registerMetric(latency as never);
  }

  private addStreamMetrics(registry: Registry, streams: StreamState[]): void {
    const length = new Gauge({
      name: "hydra_sync_stream_length_entries",
      help: "Entries in a lane or Engage stream (XLEN).",
      labelNames: ["stream", "kind"],
      registers: [registry],
    });
    const pending = new Gauge({
      name: "hydra_sync_stream_pending_entries",
      help: "Entries read by a consumer group and not yet acknowledged (XINFO GROUPS pending).",
      labelNames: ["stream", "group"],
      registers: [registry],
    });
    const lag = new Gauge({
      name: "hydra_sync_stream_lag_entries",
      help: "Entries not yet read by a consumer group (XINFO GROUPS lag); absent while Redis cannot tell.",
      labelNames: ["stream", "group"],
      registers: [registry],
    });

    for (const stream of streams) {
      length.set({ stream: stream.name, kind: stream.kind }, stream.length);
      for (const group of stream.groups) {
        pending.set({ stream: stream.name, group: group.name }, group.pending);
        if (group.lag !== null) lag.set({ stream: stream.name, group: group.name }, group.lag);
      }
    }
  }

  private addSourceMetrics(registry: Registry, held: HeldSource[]): void {
    const paused = new Gauge({
      name: "hydra_sync_source_paused",
      help: "1 while a source's Hydra API key is paused after a 401 or 403, else 0.",
      labelNames: ["source"],
      registers: [registry],
    });
    const rateLimited = new Gauge({
      name: "hydra_sync_source_rate_limited",
      help: "1 while a source waits out a Hydra 429, else 0.",
      labelNames: ["source"],
      registers: [registry],
    });

    for (const source of this.options.config.sources) {
      const isHeld = (reason: HeldSource["reason"]) => held.some((entry) => entry.source === source.name && entry.reason === reason);
      paused.set({ source: source.name }, isHeld("paused") ? 1 : 0);
      rateLimited.set({ source: source.name }, isHeld("rate_limited") ? 1 : 0);
    }
  }

  private addQueueMetrics(registry: Registry, queues: QueueCounts[]): void {
    const jobs = new Gauge({
      name: "hydra_sync_queue_jobs",
      help: "BullMQ jobs by queue and state; failed jobs are dead letters.",
      labelNames: ["queue", "state"],
      registers: [registry],
    });
    for (const { queue, counts } of queues) {
      for (const [state, count] of Object.entries(counts)) jobs.set({ queue, state }, count);
    }
  }

  private addAudienceMetrics(registry: Registry, audiences: AudienceSummary[] | undefined): void {
    const pending = new Gauge({
      name: "hydra_sync_engage_pending_changes",
      help: "Engage audience membership changes not yet synced to Hydra, by source and audience.",
      labelNames: ["source", "audience"],
      registers: [registry],
    });
    for (const audience of audiences ?? []) {
      pending.set({ source: audience.source, audience: audience.audience }, audience.pending);
    }
  }
}
