/**
 * The one-job-per-event baseline on its own: one BullMQ job per event, worker processes
 * that post each event alone to the Hydra simulator (recordEvents off).
 * bench/e2e-throughput runs it too, right after hydra-sync, for the ratio.
 *
 * Run: npm run build && node dist/bench/baseline-job-per-event.js [--events 60000] [--ingest http|direct|preloaded] [--workers 1] [--concurrency 32] [--rounds 2]
 * The simulator, each worker and, with --ingest http (the default), a minimal ingest
 * server run in child processes of their own. With --ingest direct this process adds
 * the jobs with Queue.addBulk, without HTTP ingest, which favours the baseline; with
 * --ingest preloaded it adds them all before the workers start. Needs Redis at
 * REDIS_URL (default redis://127.0.0.1:6379); each round uses a prefix
 * `hs-bench-job-per-event-<random>` and unlinks its keys at the end.
 */
import { parseArgs } from "node:util";

import { connectRedis, describeMachine, formatNumber, median, printTable, runMain, startSimulatorChild } from "./support/harness.js";
import { runJobPerEvent, type BaselineFigures, type BaselineIngest } from "./support/job-per-event.js";

runMain(async () => {
  const { values } = parseArgs({
    options: {
      events: { type: "string", default: "60000" },
      ingest: { type: "string", default: "http" },
      batch: { type: "string", default: "500" },
      senders: { type: "string", default: "4" },
      workers: { type: "string", default: "1" },
      concurrency: { type: "string", default: "32" },
      rounds: { type: "string", default: "2" },
      timeout: { type: "string", default: "300" },
    },
  });

  const redis = connectRedis();
  const simulator = await startSimulatorChild();
  const runs: BaselineFigures[] = [];
  try {
    console.log("One job per event: BullMQ job per event, one POST /v1/batch per event to the Hydra simulator");
    console.log(`machine: ${await describeMachine(redis)}`);
    const ingest = values.ingest as BaselineIngest;
    if (ingest !== "http" && ingest !== "direct" && ingest !== "preloaded") throw new Error(`Invalid --ingest ${values.ingest}: use http, direct or preloaded.`);
    console.log(
      `${formatNumber(Number(values.events))} events, ${values.workers} worker process(es) with concurrency ${values.concurrency}; ` +
        (ingest === "http"
          ? `jobs added by the HTTP ingest server from POST /v1/batch requests of ${values.batch}, ${values.senders} at a time`
          : ingest === "direct"
            ? "jobs added by this process with Queue.addBulk while the workers run"
            : "every job added with Queue.addBulk before the workers start; the clock starts when they are spawned"),
    );

    for (let round = 1; round <= Number(values.rounds); round++) {
      runs.push(
        await runJobPerEvent({
          redis,
          simulatorUrl: simulator.url,
          simulatorPid: simulator.child.pid,
          ingest,
          events: Number(values.events),
          batch: Number(values.batch),
          senders: Number(values.senders),
          workers: Number(values.workers),
          concurrency: Number(values.concurrency),
          timeoutMs: Number(values.timeout) * 1_000,
        }),
      );
    }

    console.log("");
    printTable(
      ["round", "events", "time", "events/s", "events/s, 10-90%", "Hydra requests", "duplicates", "CPU (share of one core)"],
      runs.map((run, index) => [
        String(index + 1),
        formatNumber(run.events),
        `${formatNumber(run.seconds, 1)} s`,
        formatNumber(run.eventsPerS),
        formatNumber(run.steadyEventsPerS),
        formatNumber(run.requests),
        formatNumber(run.duplicates),
        run.cpu,
      ]),
    );
    console.log("");
    console.log(`median: ${formatNumber(median(runs.map((run) => run.eventsPerS)))} events/s`);
  } finally {
    await simulator.child.stop();
    redis.disconnect();
  }
});
