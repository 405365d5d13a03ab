/**
 * Batch ingest: POST /v1/batch with 500 events per request, against the producer and,
 * for reference, the bare node:http server that only parses the JSON body.
 * Target: at least 50,000 events/s through the producer.
 *
 * Run: npm run build && node dist/bench/ingest-batch.js [--events 500] [--connections 8] [--duration 10] [--warmup 3] [--rounds 2] [--cpu-prof DIR] [--env NAME=VALUE ...]
 * The producer (`hydra-sync producer`) and the bare server run in child processes of
 * their own; autocannon runs in this process. A batch cycles through the track and
 * identify events of examples/events.jsonl that go to a lane, each with a messageId
 * unique per request and one of 500 userIds. Needs Redis at REDIS_URL (default
 * redis://127.0.0.1:6379); keys go under `hs-bench-ingest-<random>` and are unlinked
 * after each producer run.
 */
import { parseArgs } from "node:util";

import { AUTOCANNON_ID, laneSampleEvents, withIds } from "./support/events.js";
import { parseEnvOptions, runMain } from "./support/harness.js";
import { compareIngest } from "./support/ingest-compare.js";

runMain(async () => {
  const { values } = parseArgs({
    options: {
      events: { type: "string", default: "500" },
      connections: { type: "string", default: "8" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      rounds: { type: "string", default: "2" },
      "cpu-prof": { type: "string" },
      env: { type: "string", multiple: true, default: [] },
    },
  });

  const count = Number(values.events);
  const samples = laneSampleEvents();
  const batch = Array.from({ length: count }, (_, index) => withIds(samples[index % samples.length], `bench-${AUTOCANNON_ID}-${index}`, `usr_bench_${index}`));
  const body = JSON.stringify({ batch, sentAt: new Date().toISOString() });

  const { producer } = await compareIngest({
    title: `Batch ingest: POST /v1/batch, ${count} events per request`,
    path: "/v1/batch",
    body,
    eventsPerRequest: count,
    connections: Number(values.connections),
    durationS: Number(values.duration),
    warmupS: Number(values.warmup),
    rounds: Number(values.rounds),
    cpuProfDir: values["cpu-prof"],
    producerEnv: parseEnvOptions(values.env),
  });

  const eventsPerS = producer * count;
  console.log(`target: at least 50,000 events/s; ${eventsPerS >= 50_000 ? "met" : "missed"} (${Math.round(eventsPerS).toLocaleString("en-US")} events/s)`);
});
