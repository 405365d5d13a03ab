import { Counter, type Registry } from "prom-client";

import type { RequestRoute } from "../ops/health.js";

export type { RequestRoute } from "../ops/health.js";

/** Ingest outcomes that the producer reports, per process. */
export interface ProducerMetrics {
  accepted(source: string, count: number): void;
  rejected(reason: string, count: number): void;
  filtered(reason: string, count: number): void;
  duplicate(count: number): void;
}

/**
 * Registers the producer's counters in `registry` and returns the ProducerMetrics that
 * increment them. The counters are per process: under PM2's cluster mode each instance
 * counts its own requests, and the admin server's /metrics shows the service-wide totals
 * from the stats hash.
 */
export function createProducerMetrics(registry: Registry): ProducerMetrics {
  const accepted = new Counter({
    name: "hydra_sync_producer_events_accepted_total",
    help: "Events this producer process stored in a lane stream, by source.",
    labelNames: ["source"],
    registers: [registry],
  });
  const rejected = new Counter({
    name: "hydra_sync_producer_events_rejected_total",
    help: "Events this producer process rejected, by reason.",
    labelNames: ["reason"],
    registers: [registry],
  });
  const filtered = new Counter({
    name: "hydra_sync_producer_events_filtered_total",
    help: "Events this producer process accepted and did not store for Hydra, by reason.",
    labelNames: ["reason"],
    registers: [registry],
  });
  const duplicate = new Counter({
    name: "hydra_sync_producer_events_duplicate_total",
    help: "Events this producer process dropped because their messageId was seen within DEDUPE_WINDOW.",
    registers: [registry],
  });

  return {
    accepted: (source, count) => accepted.inc({ source }, count),
    rejected: (reason, count) => rejected.inc({ reason }, count),
    filtered: (reason, count) => filtered.inc({ reason }, count),
    duplicate: (count) => duplicate.inc(count),
  };
}

/** Returns a route that serves `registry` in Prometheus text format at GET /metrics. */
export function metricsRoute(registry: Registry): RequestRoute {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) return false;

    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": registry.contentType, "cache-control": "no-store" });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (error: Error) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`metrics collection failed: ${error.message}\n`);
      },
    );
    return true;
  };
}
