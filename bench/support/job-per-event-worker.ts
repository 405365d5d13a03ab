/**
 * Worker of the one-job-per-event baseline: a BullMQ worker whose every job contains one
 * event, sent alone to Hydra's POST /v1/batch through hydra-sync's own Hydra client.
 *
 * Usage: node dist/bench/support/job-per-event-worker.js
 * Environment: REDIS_URL, REDIS_PREFIX (its queue is `<prefix>:bull` / `job-per-event`),
 * HYDRA_API_URL, HYDRA_API_KEY, WORKER_CONCURRENCY (default 32). Prints
 * "job-per-event worker started" once ready and stops on SIGTERM or SIGINT.
 */
import { Worker } from "bullmq";

import { createHydraClient } from "../../src/hydra/client.js";
import { createLogger } from "../../src/logging/logger.js";
import { createRedis } from "../../src/redis/connection.js";
import { JOB_PER_EVENT_QUEUE, type JobPerEventData } from "./job-per-event.js";

async function main(): Promise<void> {
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const prefix = required("REDIS_PREFIX");
  const hydraApiUrl = required("HYDRA_API_URL");
  const apiKey = required("HYDRA_API_KEY");
  const concurrency = Number(process.env.WORKER_CONCURRENCY ?? "32");

  const logger = createLogger("warn", { role: "job-per-event-worker" });
  const hydra = createHydraClient({ baseUrl: hydraApiUrl, timeoutMs: 10_000, logger });
  const connection = createRedis(redisUrl);

  const worker = new Worker<JobPerEventData>(
    JOB_PER_EVENT_QUEUE,
    async (job) => {
      const [result] = await hydra.sendBatch({ apiKey, idempotencyKey: job.id!, events: [job.data.event] });
      if (result.status !== 200) throw new Error(`Hydra rejected job ${job.id} with status ${result.status}: ${result.error ?? ""}`);
    },
    { connection, prefix: `${prefix}:bull`, concurrency },
  );
  worker.on("error", (error) => logger.error({ err: error }, "job-per-event worker error"));
  await worker.waitUntilReady();
  console.log("job-per-event worker started");

  const stop = () => {
    void (async () => {
      await worker.close();
      await hydra.close();
      connection.disconnect();
      process.exit(0);
    })();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; the benchmark that starts this worker sets it.`);
  return value;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
