/**
 * Single-event ingest: POST /v1/track with one event per request, against the producer
 * and against a bare node:http server that only parses the JSON body and responds 200.
 * Target: the producer serves at least 60% of the bare server's requests/s.
 *
 * Run: npm run build && node dist/bench/ingest-track.js [--connections 50] [--duration 10] [--warmup 3] [--rounds 2] [--cpu-prof DIR] [--env NAME=VALUE ...]
 * The producer (`hydra-sync producer`) and the bare server run in child processes of
 * their own; autocannon runs in this process. Each request carries a typical
 * analytics.js track event from examples/events.jsonl with a new messageId and userId.
 * Needs Redis at REDIS_URL (default redis://127.0.0.1:6379); keys go under
 * `hs-bench-ingest-<random>` and are unlinked after each producer run.
 */
import { parseArgs } from "node:util";

import { AUTOCANNON_ID, typicalTrackEvent, withIds } from "./support/events.js";
import { parseEnvOptions, runMain } from "./support/harness.js";
import { compareIngest } from "./support/ingest-compare.js";

runMain(async () => {
  const { values } = parseArgs({
    options: {
      connections: { type: "string", default: "50" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      rounds: { type: "string", default: "2" },
      "cpu-prof": { type: "string" },
      env: { type: "string", multiple: true, default: [] },
    },
  });

  const event = withIds(typicalTrackEvent(), `bench-${AUTOCANNON_ID}`, `usr_${AUTOCANNON_ID}`);
  const { producer, bare } = await compareIngest({
    title: "Single-event ingest: POST /v1/track, one event per request",
    path: "/v1/track",
    body: JSON.stringify(event),
    eventsPerRequest: 1,
    connections: Number(values.connections),
    durationS: Number(values.duration),
    warmupS: Number(values.warmup),
    rounds: Number(values.rounds),
    cpuProfDir: values["cpu-prof"],
    producerEnv: parseEnvOptions(values.env),
  });

  const ratio = producer / bare;
  console.log(`target: at least 60% of the bare server; ${ratio >= 0.6 ? "met" : "missed"} (${(100 * ratio).toFixed(1)}%)`);
});
