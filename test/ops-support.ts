/** Helpers shared by the test/ops-*.test.ts files. */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { pino } from "pino";

import type { Config } from "../src/config/env.js";
import { REDACTED_PATHS, type Logger } from "../src/logging/logger.js";
import { createRedis } from "../src/redis/connection.js";
import { DELIVERY_QUEUE, RedisKeys } from "../src/redis/keys.js";
import { createDeliveryQueue, deliveryJobOptions } from "../src/worker/delivery-queue.js";
import type { DeliveryJobData, HydraRejection } from "../src/worker/job-data.js";

/** Collects what a command writes, as one string. */
export class TextCapture {
  text = "";
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
  lines(): string[] {
    return this.text.split("\n").filter((line) => line.length > 0);
  }
}

/** Creates a pino logger that keeps its JSON lines in memory, for asserting what a component logs. */
export function capturingLogger(level = "info"): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } }, stream);
  return {
    logger,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** Builds the data of a delivery job with `count` track events of one user. */
export function deliveryData(source: string, lane: string, count: number, firstEntryMs = 1_741_700_000_000): DeliveryJobData {
  const entryIds = Array.from({ length: count }, (_, index) => `${firstEntryMs + index}-0`);
  const events = entryIds.map((id) =>
    JSON.stringify({ type: "track", event: "Report Viewed", userId: "usr_1", messageId: `msg-${lane}-${id}`, receivedAt: "2025-03-11T10:00:00.000Z", timestamp: "2025-03-11T10:00:00.000Z" }),
  );
  return {
    source,
    lane,
    kind: "batch",
    entryIds,
    users: entryIds.map(() => "usr_1"),
    events,
    count,
    bytes: events.reduce((sum, event) => sum + Buffer.byteLength(event) + 1, 64),
  };
}

export interface DeadLetterSpec {
  id: string;
  data: DeliveryJobData;
  rejection: Omit<HydraRejection, "at">;
}

/**
 * Adds delivery jobs and lets a BullMQ worker fail each one the way the delivery worker
 * dead-letters a job: data.deadLetter set, then an UnrecoverableError whose message is
 * "<code> (<status>): <error>". Resolves once every job is in the failed set.
 */
export async function makeDeadLetters(config: Config, connection: Redis, specs: DeadLetterSpec[]): Promise<void> {
  const queue = createDeliveryQueue(config, connection);
  await queue.addBulk(specs.map((spec) => ({ name: spec.data.kind, data: spec.data, opts: deliveryJobOptions(config, spec.id) })));

  const byId = new Map(specs.map((spec) => [spec.id, spec]));
  const workerConnection = createRedis(config.redisUrl);
  const worker = new Worker<DeliveryJobData>(
    DELIVERY_QUEUE,
    async (job) => {
      const { rejection } = byId.get(job.id!)!;
      await job.updateData({ ...job.data, deadLetter: { ...rejection, at: Date.now(), attempts: job.attemptsMade + 1 } });
      throw new UnrecoverableError(`${rejection.code}${rejection.status ? ` (${rejection.status})` : ""}: ${rejection.error}`);
    },
    { connection: workerConnection, prefix: new RedisKeys(config.redisPrefix).bullPrefix(), concurrency: 50 },
  );

  try {
    const deadline = Date.now() + 20_000;
    while ((await queue.getFailedCount()) < specs.length) {
      if (Date.now() > deadline) throw new Error(`only ${await queue.getFailedCount()} of ${specs.length} jobs failed within 20 s`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  } finally {
    await worker.close();
    await queue.close();
    workerConnection.disconnect();
  }
}

/** Starts a node:http server on 127.0.0.1 that serves `route` and responds with 404 to every other request. */
export async function serveRoute(route: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (route(req, res)) return;
    res.writeHead(404).end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
