/**
 * HTTP ingest of the one-job-per-event baseline: POST /v1/batch parses the body and adds
 * one BullMQ job per event with Queue.addBulk, then responds 200. It does what the
 * baseline design needs and no more: no authentication, validation or deduplication,
 * only the normalization the Hydra simulator checks (receivedAt, a UTC timestamp, a
 * valid eventFlag).
 *
 * Usage: node dist/bench/support/job-per-event-ingest.js PORT
 * Environment: REDIS_URL, REDIS_PREFIX (the queue is `<prefix>:bull` / `job-per-event`).
 * Prints "job-per-event ingest listening on <url>" once ready and stops on SIGTERM or SIGINT.
 */
import { createServer } from "node:http";

import { Queue } from "bullmq";

import { createRedis } from "../../src/redis/connection.js";
import { JOB_PER_EVENT_JOB_OPTIONS, JOB_PER_EVENT_QUEUE, normalizedEvent, type JobPerEventData } from "./job-per-event.js";

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? "0");
  const prefix = process.env.REDIS_PREFIX;
  if (!prefix) throw new Error("REDIS_PREFIX is not set; the benchmark that starts this server sets it.");

  const connection = createRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  const queue = new Queue<JobPerEventData>(JOB_PER_EVENT_QUEUE, { connection, prefix: `${prefix}:bull` });

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      void (async () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { batch: Record<string, unknown>[] };
          const receivedAt = new Date().toISOString();
          await queue.addBulk(
            body.batch.map((event) => ({
              name: "event",
              data: { event: normalizedEvent(event, String(event.messageId), String(event.userId), receivedAt) },
              opts: JOB_PER_EVENT_JOB_OPTIONS,
            })),
          );
          res.writeHead(200, { "Content-Type": "application/json" }).end('{"success":true}');
        } catch (error) {
          res.writeHead(500, { "Content-Type": "application/json" }).end(JSON.stringify({ success: false, error: (error as Error).message }));
        }
      })();
    });
  });

  server.listen(port, "127.0.0.1", () => console.log(`job-per-event ingest listening on http://127.0.0.1:${port}`));

  const stop = () => {
    server.close();
    server.closeAllConnections();
    void queue.close().finally(() => {
      connection.disconnect();
      process.exit(0);
    });
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
