/**
 * Runs autocannon against the producer and against the bare node:http server with the
 * same requests, alternating the two so that both see the same background load, and
 * prints one row per run and the ratio of the medians.
 */
import { mkdirSync } from "node:fs";
import { performance } from "node:perf_hooks";

import autocannon, { type Result } from "autocannon";

import {
  BENCH_AUTHORIZATION,
  type BenchChild,
  benchPrefix,
  cleanUp,
  connectRedis,
  deletePrefix,
  describeMachine,
  formatNumber,
  median,
  printTable,
  processCpuSeconds,
  redisCpuSeconds,
  startBareServerChild,
  startProducerChild,
} from "./harness.js";

export interface IngestScenario {
  title: string;
  /** Path of the producer endpoint, such as /v1/track. */
  path: string;
  /** Request body; every `[<id>]` becomes one new id per request. */
  body: string;
  eventsPerRequest: number;
  connections: number;
  durationS: number;
  warmupS: number;
  rounds: number;
  /** Writes a --cpu-prof profile of the producer to this directory. */
  cpuProfDir?: string;
  /** Settings of the producer, such as DEDUPE_WINDOW, over the defaults. */
  producerEnv?: Record<string, string>;
}

interface RunFigures {
  server: "bare" | "producer";
  round: number;
  requestsPerS: number;
  eventsPerS: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  /** CPU used during the measured run, as a share of one core. */
  serverCpu: number;
  redisCpu: number;
  loadGeneratorCpu: number;
}

/** Runs the scenario and returns the median requests/s of the producer and of the bare server. */
export async function compareIngest(scenario: IngestScenario): Promise<{ producer: number; bare: number }> {
  const redis = connectRedis();
  const prefix = benchPrefix("ingest");
  const children: BenchChild[] = [];
  const runs: RunFigures[] = [];

  try {
    console.log(`${scenario.title}`);
    console.log(`machine: ${await describeMachine(redis)}`);
    console.log(
      `load: autocannon in this process, ${scenario.connections} connections, ${scenario.warmupS} s warm-up then ${scenario.durationS} s per run, ` +
        `${scenario.rounds} rounds, ${formatNumber(Buffer.byteLength(scenario.body))}-byte body with ${scenario.eventsPerRequest} event(s) to POST ${scenario.path}`,
    );

    const bare = await startBareServerChild();
    children.push(bare.child);
    if (scenario.cpuProfDir) mkdirSync(scenario.cpuProfDir, { recursive: true });
    const producer = await startProducerChild(prefix, "http://127.0.0.1:9", {
      nodeArgs: scenario.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", scenario.cpuProfDir] : [],
      env: scenario.producerEnv,
    });
    children.push(producer.child);
    if (scenario.producerEnv && Object.keys(scenario.producerEnv).length > 0) {
      console.log(`producer settings: ${Object.entries(scenario.producerEnv).map(([name, value]) => `${name}=${value}`).join(" ")}`);
    }

    let storedEvents = 0;
    let okEvents = 0;
    for (let round = 1; round <= scenario.rounds; round++) {
      for (const [server, url, child] of [["bare", bare.url, bare.child], ["producer", producer.url, producer.child]] as const) {
        await load(scenario, url, scenario.warmupS);
        const before = { server: processCpuSeconds(child.pid), redis: await redisCpuSeconds(redis), self: process.cpuUsage(), at: performance.now() };
        const result = await load(scenario, url, scenario.durationS);
        const seconds = (performance.now() - before.at) / 1_000;
        const self = process.cpuUsage(before.self);
        const cpu = {
          server: (processCpuSeconds(child.pid) - before.server) / seconds,
          redis: ((await redisCpuSeconds(redis)) - before.redis) / seconds,
          loadGenerator: (self.user + self.system) / 1e6 / seconds,
        };
        const figures = toFigures(server, round, result, scenario.eventsPerRequest, cpu);
        runs.push(figures);
        console.error(`round ${round} ${server}: ${formatNumber(figures.requestsPerS)} requests/s`);

        if (server === "producer") {
          // Keep Redis memory bounded on the shared server: each round starts empty.
          storedEvents += Number(await redis.hget(`${prefix}:stats`, "accepted"));
          okEvents += okCount(result) * scenario.eventsPerRequest;
          await deletePrefix(redis, prefix);
        }
      }
    }
    // Warm-up requests are stored too, so at least every measured 2xx event must be.
    if (storedEvents < okEvents) throw new Error(`the producer responded 200 to ${okEvents} measured events, but its stats hash counts only ${storedEvents} accepted; check its log`);

    console.log("");
    printTable(
      ["server", "round", "requests/s", "events/s", "latency p50", "latency p99", "non-2xx", "errors", "CPU: server / Redis / autocannon"],
      runs.map((run) => [
        run.server,
        String(run.round),
        formatNumber(run.requestsPerS),
        formatNumber(run.eventsPerS),
        `${formatNumber(run.p50Ms)} ms`,
        `${formatNumber(run.p99Ms)} ms`,
        String(run.non2xx),
        String(run.errors),
        `${formatNumber(100 * run.serverCpu)}% / ${formatNumber(100 * run.redisCpu)}% / ${formatNumber(100 * run.loadGeneratorCpu)}%`,
      ]),
    );
    console.log("CPU is a share of one core during the measured run; Redis's share includes other clients of the server.");

    const producerMedian = median(runs.filter((run) => run.server === "producer").map((run) => run.requestsPerS));
    const bareMedian = median(runs.filter((run) => run.server === "bare").map((run) => run.requestsPerS));
    console.log("");
    console.log(
      `median: producer ${formatNumber(producerMedian)} requests/s (${formatNumber(producerMedian * scenario.eventsPerRequest)} events/s), ` +
        `bare server ${formatNumber(bareMedian)} requests/s; producer / bare = ${formatNumber((100 * producerMedian) / bareMedian)}%`,
    );
    return { producer: producerMedian, bare: bareMedian };
  } finally {
    await cleanUp(children, redis, [prefix]);
    redis.disconnect();
  }
}

function load(scenario: IngestScenario, baseUrl: string, durationS: number): Promise<Result> {
  return autocannon({
    url: `${baseUrl}${scenario.path}`,
    method: "POST",
    headers: { "content-type": "application/json", authorization: BENCH_AUTHORIZATION },
    body: scenario.body,
    idReplacement: true,
    connections: scenario.connections,
    duration: durationS,
    timeout: 10,
  });
}

function okCount(result: Result): number {
  return result["2xx"];
}

function toFigures(server: RunFigures["server"], round: number, result: Result, eventsPerRequest: number, cpu: { server: number; redis: number; loadGenerator: number }): RunFigures {
  const requestsPerS = okCount(result) / result.duration;
  return {
    server,
    round,
    requestsPerS,
    eventsPerS: requestsPerS * eventsPerRequest,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    serverCpu: cpu.server,
    redisCpu: cpu.redis,
    loadGeneratorCpu: cpu.loadGenerator,
  };
}
