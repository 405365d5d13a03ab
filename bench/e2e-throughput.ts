/**
 * End-to-end throughput: events posted to the producer's /v1/batch until the Hydra
 * simulator (recordEvents off) accepted every one, compared with a one-job-per-event
 * design on the same Redis, simulator and machine.
 * Targets: at least 20,000 events/s, and ten times the one-job-per-event baseline.
 *
 * Run: npm run build && node dist/bench/e2e-throughput.js [--events 300000] [--workers 1] [--rounds 2]
 *        [--batch 500] [--senders 4] [--baseline-events 60000] [--baseline-concurrency 32] [--skip-baseline] [--preload] [--cpu-prof DIR]
 * The simulator, the producer (`hydra-sync producer`) and each worker (`hydra-sync
 * worker`) run in child processes of their own; the sender runs in this process and
 * posts as fast as the producer responds, so ingest and delivery share the machine.
 * The rate is events / (time the simulator held the last event - time the first request
 * started). The baseline (bench/support/job-per-event) runs after hydra-sync, twice per
 * round: with HTTP ingest of the same requests, and with jobs added directly.
 * With --preload, every event is stored before the workers start and the clock starts
 * when they are spawned, for both designs: that measures delivery alone. Needs Redis at REDIS_URL (default redis://127.0.0.1:6379); each round uses
 * a prefix `hs-bench-e2e-<random>` and unlinks its keys at the end.
 */
import { mkdirSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

import {
  type BenchChild,
  benchPrefix,
  cleanUp,
  connectRedis,
  describeMachine,
  formatNumber,
  getJson,
  type LatencyFigures,
  median,
  postJson,
  printTable,
  runMain,
  sampleCpu,
  type CpuSample,
  formatCpuShares,
  type SimulatorCounters,
  startProducerChild,
  startSimulatorChild,
  startWorkerChild,
  waitForAccepted,
} from "./support/harness.js";
import { runJobPerEvent, steadyRate, type BaselineFigures } from "./support/job-per-event.js";
import { batchBodies, sendClosedLoop } from "./support/sender.js";

interface PipelineFigures {
  round: number;
  events: number;
  sendSeconds: number;
  seconds: number;
  eventsPerS: number;
  steadyEventsPerS: number;
  requests: number;
  duplicates: number;
  retries: number;
  latency: LatencyFigures;
  cpu: string;
}

runMain(async () => {
  const { values } = parseArgs({
    options: {
      events: { type: "string", default: "300000" },
      workers: { type: "string", default: "1" },
      rounds: { type: "string", default: "2" },
      batch: { type: "string", default: "500" },
      senders: { type: "string", default: "4" },
      "baseline-events": { type: "string", default: "60000" },
      "baseline-concurrency": { type: "string", default: "32" },
      "skip-baseline": { type: "boolean", default: false },
      preload: { type: "boolean", default: false },
      "cpu-prof": { type: "string" },
      timeout: { type: "string", default: "300" },
    },
  });
  const batch = Number(values.batch);
  const requests = Math.ceil(Number(values.events) / batch);
  const events = requests * batch;
  const workers = Number(values.workers);
  const rounds = Number(values.rounds);
  const timeoutMs = Number(values.timeout) * 1_000;
  const preload = values.preload ?? false;
  const cpuProfDir = values["cpu-prof"];
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const nodeArgs = cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : [];

  const redis = connectRedis();
  const simulator = await startSimulatorChild();
  const pipelineRuns: PipelineFigures[] = [];
  const baselineRuns: BaselineFigures[] = [];

  try {
    console.log(preload ? "Delivery throughput into the Hydra simulator (recordEvents off), events stored before the workers start" : "End-to-end throughput into the Hydra simulator (recordEvents off)");
    console.log(`machine: ${await describeMachine(redis)}`);
    console.log(
      `hydra-sync: ${formatNumber(events)} events in ${requests} POST /v1/batch requests of ${batch}, ${values.senders} at a time; ` +
        `1 producer and ${workers} worker process(es) with default settings (PARTITIONS 16, WORKER_CONCURRENCY 32, BATCH_LINGER_MS 250)`,
    );
    if (!values["skip-baseline"]) {
      const adding = preload
        ? "every job added with Queue.addBulk before the workers start (\"preloaded\")"
        : 'jobs added by an HTTP ingest server from the same /v1/batch requests ("http"), or by this process with Queue.addBulk ("direct")';
      console.log(
        `baseline: ${formatNumber(Number(values["baseline-events"]))} events, one BullMQ job each, ${workers} worker process(es) with concurrency ${values["baseline-concurrency"]}, ` +
          `each job one POST /v1/batch of 1 event; ${adding}`,
      );
    }

    for (let round = 1; round <= rounds; round++) {
      const prefix = benchPrefix("e2e");
      const children: BenchChild[] = [];
      try {
        const producer = await startProducerChild(prefix, simulator.url, { nodeArgs });
        children.push(producer.child);

        const startWorkers = async () => {
          for (let i = 0; i < workers; i++) children.push(await startWorkerChild(prefix, simulator.url, { nodeArgs, name: `worker ${i + 1}` }));
        };
        const bodies = batchBodies(prefix.slice(-8), batch);
        const send = () => sendClosedLoop({ url: producer.url, path: "/v1/batch", requests, concurrency: Number(values.senders), body: bodies, timeoutMs });

        const cpuGroups = () => ({
          producer: [producer.child.pid],
          workers: children.slice(1).map((child) => child.pid),
          simulator: [simulator.child.pid],
        });

        let startedAt: number;
        let cpuBefore: CpuSample;
        let sent: Awaited<ReturnType<typeof send>>;
        let delivery: ReturnType<typeof waitForAccepted>;
        if (preload) {
          // Delivery only: every event waits in the lane streams before the first worker starts.
          sent = await send();
          cpuBefore = await sampleCpu(redis, cpuGroups());
          startedAt = performance.now();
          delivery = waitForAccepted(simulator.url, events, timeoutMs, 200);
          await startWorkers();
        } else {
          await startWorkers();
          cpuBefore = await sampleCpu(redis, cpuGroups());
          startedAt = performance.now();
          delivery = waitForAccepted(simulator.url, events, timeoutMs, 200);
          sent = await send();
        }
        const { doneAt, samples } = await delivery;
        const cpu = formatCpuShares(cpuBefore, await sampleCpu(redis, cpuGroups()), "sender");

        const stats = await getJson<SimulatorCounters>(`${simulator.url}/_sim/stats`);
        const latency = await getJson<LatencyFigures>(`${simulator.url}/_sim/latency`);
        const seconds = (doneAt - startedAt) / 1_000;
        const figures: PipelineFigures = {
          round,
          events,
          sendSeconds: (sent.finishedAt - sent.startedAt) / 1_000,
          seconds,
          eventsPerS: events / seconds,
          steadyEventsPerS: steadyRate(samples, events),
          requests: stats.requests,
          duplicates: stats.duplicates,
          retries: sent.retries,
          latency,
          cpu,
        };
        pipelineRuns.push(figures);
        console.error(`hydra-sync round ${round}: ${formatNumber(figures.eventsPerS)} events/s`);
      } finally {
        await cleanUp(children, redis, [prefix]);
        await postJson(`${simulator.url}/_sim/reset`, {});
      }
    }

    if (!values["skip-baseline"]) {
      for (let round = 1; round <= rounds; round++) {
        for (const ingest of preload ? (["preloaded"] as const) : (["http", "direct"] as const)) {
          const figures = await runJobPerEvent({
            redis,
            simulatorUrl: simulator.url,
            simulatorPid: simulator.child.pid,
            ingest,
            events: Number(values["baseline-events"]),
            workers,
            concurrency: Number(values["baseline-concurrency"]),
            batch,
            senders: Number(values.senders),
            timeoutMs,
          });
          baselineRuns.push(figures);
          console.error(`baseline (${ingest}) round ${round}: ${formatNumber(figures.eventsPerS)} events/s`);
        }
      }
    }

    console.log("");
    printTable(
      ["design", "round", "events", "send time", "end-to-end time", "events/s", "events/s, 10-90%", "Hydra requests", "duplicates", "latency p50 / p99 / max", "CPU (share of one core)"],
      [
        ...pipelineRuns.map((run) => [
          preload ? "hydra-sync, preloaded" : "hydra-sync",
          String(run.round),
          formatNumber(run.events),
          `${formatNumber(run.sendSeconds, 1)} s`,
          `${formatNumber(run.seconds, 1)} s`,
          formatNumber(run.eventsPerS),
          formatNumber(run.steadyEventsPerS),
          formatNumber(run.requests),
          formatNumber(run.duplicates),
          `${formatNumber(run.latency.p50)} / ${formatNumber(run.latency.p99)} / ${formatNumber(run.latency.max)} ms`,
          run.cpu,
        ]),
        ...baselineRuns.map((run, index) => [
          `one job per event, ${run.ingest}`,
          String(Math.floor(index / (preload ? 1 : 2)) + 1),
          formatNumber(run.events),
          "-",
          `${formatNumber(run.seconds, 1)} s`,
          formatNumber(run.eventsPerS),
          formatNumber(run.steadyEventsPerS),
          formatNumber(run.requests),
          formatNumber(run.duplicates),
          "-",
          run.cpu,
        ]),
      ],
    );

    const pipelineMedian = median(pipelineRuns.map((run) => run.eventsPerS));
    console.log("");
    if (preload) {
      const baselineMedian = median(baselineRuns.map((run) => run.eventsPerS));
      console.log(`delivery only: hydra-sync median ${formatNumber(pipelineMedian)} events/s, one job per event median ${formatNumber(baselineMedian)} events/s, ratio ${formatNumber(pipelineMedian / baselineMedian, 1)}`);
    } else {
      console.log(`target: at least 20,000 events/s end to end; ${pipelineMedian >= 20_000 ? "met" : "missed"} (median ${formatNumber(pipelineMedian)} events/s)`);
    }
    if (baselineRuns.length > 0 && !preload) {
      const httpMedian = median(baselineRuns.filter((run) => run.ingest === "http").map((run) => run.eventsPerS));
      const directMedian = median(baselineRuns.filter((run) => run.ingest === "direct").map((run) => run.eventsPerS));
      const ratio = pipelineMedian / httpMedian;
      console.log(
        `target: ten times one job per event, both with HTTP ingest; ${ratio >= 10 ? "met" : "missed"} (median ${formatNumber(httpMedian)} events/s, ratio ${formatNumber(ratio, 1)}); ` +
          `against the baseline without HTTP ingest (median ${formatNumber(directMedian)} events/s) the ratio is ${formatNumber(pipelineMedian / directMedian, 1)}`,
      );
    }
  } finally {
    await simulator.child.stop();
    redis.disconnect();
  }
});
