/**
 * Delivery latency at a steady rate: an open-loop sender posts single events to
 * /v1/track at a fixed rate, and the Hydra simulator measures each event's time from its
 * `receivedAt` (set by the producer) to its acceptance.
 * Target: p99 under 1.5 s at 1,000 events/s.
 *
 * Run: npm run build && node dist/bench/latency.js [--rate 1000] [--duration 60] [--workers 1] [--rounds 2] [--cpu-prof DIR]
 * The simulator (recordEvents off), the producer and each worker run in child processes
 * of their own, with default settings (BATCH_LINGER_MS 250, PARTITIONS 16). The sender
 * runs in this process and starts requests on schedule whatever the responses do. Each
 * request carries a typical analytics.js track event from examples/events.jsonl, with a
 * new messageId and one of 10,000 userIds. Needs Redis at REDIS_URL (default
 * redis://127.0.0.1:6379); each round uses a prefix `hs-bench-latency-<random>` and
 * unlinks its keys at the end.
 */
import { mkdirSync } from "node:fs";
import { parseArgs } from "node:util";

import { typicalTrackEvent, withIds } from "./support/events.js";
import {
  type BenchChild,
  benchPrefix,
  cleanUp,
  connectRedis,
  describeMachine,
  formatNumber,
  getJson,
  type LatencyFigures,
  postJson,
  printTable,
  runMain,
  type SimulatorCounters,
  startProducerChild,
  startSimulatorChild,
  startWorkerChild,
  waitForAccepted,
} from "./support/harness.js";
import { sendOpenLoop, type OpenLoopResult } from "./support/sender.js";

/** Distinct userIds the sender cycles through, which spreads events over every lane. */
const USERS = 10_000;
const REQUEST_TOKEN = "@@request@@";
const USER_TOKEN = "@@user@@";

runMain(async () => {
  const { values } = parseArgs({
    options: {
      rate: { type: "string", default: "1000" },
      duration: { type: "string", default: "60" },
      workers: { type: "string", default: "1" },
      rounds: { type: "string", default: "2" },
      connections: { type: "string", default: "64" },
      "cpu-prof": { type: "string" },
    },
  });
  const rate = Number(values.rate);
  const durationS = Number(values.duration);
  const cpuProfDir = values["cpu-prof"];
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  const nodeArgs = cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : [];

  const redis = connectRedis();
  const simulator = await startSimulatorChild();
  const rows: string[][] = [];
  const p99s: number[] = [];

  try {
    console.log("Latency from receivedAt to the Hydra simulator at a steady rate");
    console.log(`machine: ${await describeMachine(redis)}`);
    console.log(
      `load: open loop, ${formatNumber(rate)} POST /v1/track requests/s (one event each) for ${durationS} s over up to ${values.connections} connections; ` +
        `1 producer and ${values.workers} worker process(es) with default settings`,
    );

    for (let round = 1; round <= Number(values.rounds); round++) {
      const prefix = benchPrefix("latency");
      const children: BenchChild[] = [];
      try {
        const producer = await startProducerChild(prefix, simulator.url, { nodeArgs });
        children.push(producer.child);
        for (let i = 0; i < Number(values.workers); i++) children.push(await startWorkerChild(prefix, simulator.url, { nodeArgs, name: `worker ${i + 1}` }));

        const runId = prefix.slice(-8);
        const template = JSON.stringify(withIds(typicalTrackEvent(), `${runId}-${REQUEST_TOKEN}`, `usr_bench_${USER_TOKEN}`));
        const body = (request: number) => template.replace(REQUEST_TOKEN, String(request)).replace(USER_TOKEN, String(request % USERS));

        const sent: OpenLoopResult = await sendOpenLoop({
          url: producer.url,
          path: "/v1/track",
          rate,
          durationS,
          connections: Number(values.connections),
          body,
          drainTimeoutMs: 30_000,
        });
        if (sent.failed > 0) throw new Error(`${sent.failed} of ${sent.sent} requests failed or got no 200`);
        await waitForAccepted(simulator.url, sent.ok, 60_000, 200);

        const latency = await getJson<LatencyFigures>(`${simulator.url}/_sim/latency`);
        const stats = await getJson<SimulatorCounters>(`${simulator.url}/_sim/stats`);
        p99s.push(latency.p99 ?? Number.NaN);
        rows.push([
          String(round),
          formatNumber(sent.ok),
          formatNumber(sent.requestsPerS),
          formatNumber(stats.requests),
          formatNumber(stats.duplicates),
          `${formatNumber(latency.p50)} ms`,
          `${formatNumber(latency.p95)} ms`,
          `${formatNumber(latency.p99)} ms`,
          `${formatNumber(latency.max)} ms`,
          `${formatNumber(sent.responseP50Ms, 1)} / ${formatNumber(sent.responseP99Ms, 1)} / ${formatNumber(sent.responseMaxMs)} ms`,
          `${formatNumber(sent.maxStartLagMs, 1)} ms`,
        ]);
        console.error(`round ${round}: p99 ${formatNumber(latency.p99)} ms`);
      } finally {
        await cleanUp(children, redis, [prefix]);
        await postJson(`${simulator.url}/_sim/reset`, {});
      }
    }

    console.log("");
    printTable(
      ["round", "events", "sent/s", "Hydra requests", "duplicates", "p50", "p95", "p99", "max", "HTTP response p50 / p99 / max", "sender lag max"],
      rows,
    );
    const worst = Math.max(...p99s);
    console.log("");
    console.log(`target: p99 under 1,500 ms at ${formatNumber(rate)} events/s; ${worst < 1_500 ? "met" : "missed"} (highest p99 of the rounds ${formatNumber(worst)} ms)`);
  } finally {
    await simulator.child.stop();
    redis.disconnect();
  }
});
