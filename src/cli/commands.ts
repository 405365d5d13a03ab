import { parseArgs } from "node:util";
import { Registry } from "prom-client";

import { assertAdminAccessConfigured, startAdmin } from "../admin/server.js";
import { loadConfig, describeVariables, DEVELOPMENT_WRITE_KEY, type Config } from "../config/env.js";
import { listAudiences, startEngageService } from "../engage/index.js";
import { createHydraClient } from "../hydra/client.js";
import { createLogger, type Logger } from "../logging/logger.js";
import { createProducerMetrics, metricsRoute } from "../metrics/producer-metrics.js";
import { healthRoutes } from "../ops/health.js";
import { runReplay } from "../ops/replay.js";
import { runStatus } from "../ops/status.js";
import { startProducer } from "../producer/index.js";
import { assertRedisReachable, createRedis } from "../redis/connection.js";
import { startSimulator } from "../simulator/index.js";
import { startWorker } from "../worker/index.js";
import { runDemo } from "./demo.js";
import { closeOnSignals, type Closeable } from "./lifecycle.js";
import { sendFile } from "./send.js";

const USAGE = `Usage: hydra-sync <command> [options]

Service roles (run until SIGINT or SIGTERM):
  start        every role in one process: producer, worker, Engage scheduler, admin
               server, and the Hydra simulator while HYDRA_API_URL is left at its default
  producer     the Segment HTTP Tracking API on PRODUCER_HOST:PRODUCER_PORT
  worker       the router and delivery worker; run several for more throughput
  scheduler    the Engage audience store and sync scheduler
  admin        Bull Board, /metrics and /v1/audiences on ADMIN_HOST:ADMIN_PORT
  simulator    the bundled Hydra simulator on SIM_HOST:SIM_PORT

Tools:
  demo                      play the bundled sample events through every role and print a summary
  send FILE.jsonl           post a JSONL file of Segment events to the producer
       [--url URL] [--write-key KEY]
  replay [options]          list and replay dead-lettered jobs (replay --help)
  status [--json]           queue counts, stream lag, paused keys, audiences due next
  audiences [--json]        Engage audiences: members, pending changes, last and next sync

Configuration comes from environment variables; see the README.`;

/** Runs one CLI command. Returns an exit code, or undefined for a role that keeps running. */
export async function runCommand(command: string, args: string[]): Promise<number | undefined> {
  switch (command) {
    case "start":
    case "producer":
    case "worker":
    case "scheduler":
    case "admin":
    case "simulator":
      await startRoles(command);
      return undefined;
    case "send":
      return send(args);
    case "demo":
      return runDemo();
    case "replay":
      return runReplay(args, await toolContext());
    case "status":
      return runStatus(args, await toolContext());
    case "audiences":
      return audiences(args);
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n\nEnvironment variables and defaults:\n`);
      for (const { name, defaultValue } of describeVariables()) {
        process.stdout.write(`  ${name.padEnd(28)}${defaultValue ?? "(not set)"}\n`);
      }
      return 0;
    default:
      process.stderr.write(`hydra-sync: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

async function toolContext(): Promise<{ config: Config; logger: Logger }> {
  const config = loadConfig();
  await assertRedisReachable(config.redisUrl);
  return { config, logger: createLogger(config.logLevel === "info" ? "warn" : config.logLevel) };
}

/** Starts the roles of a command in this process and closes them on SIGINT or SIGTERM. */
async function startRoles(command: string): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, { role: command });
  for (const warning of config.warnings) logger.warn(warning);
  const all = command === "start";
  const parts: Closeable[] = [];

  // Stop in reverse order of start: the producer first, so nothing new arrives while the rest drains.
  const register = (part: Closeable) => parts.unshift(part);

  // Check everything that can fail with one line before any role starts.
  if (all || command === "admin") assertAdminAccessConfigured(config);
  if (command !== "simulator") await assertRedisReachable(config.redisUrl);

  if (command === "simulator" || (all && config.usesSimulator)) {
    const simulator = await startSimulator({ port: config.simulatorPort, host: config.simulatorHost, logger });
    register({ name: "simulator", close: () => simulator.close() });
  }

  if (all || command === "admin") {
    const admin = await startAdmin(config, { logger, listAudiences: (redis) => listAudiences(redis, config) });
    register({ name: "admin", close: () => admin.close() });
  }

  if (all || command === "scheduler") {
    const hydraClient = createHydraClient({ baseUrl: config.hydraApiUrl, timeoutMs: config.hydraTimeoutMs, logger });
    const engage = await startEngageService({ config, logger, hydraClient });
    register({ name: "engage", close: async () => { await engage.close(); await hydraClient.close(); } });
  }

  if (all || command === "worker") {
    const worker = await startWorker({ config, logger });
    register({ name: "worker", close: () => worker.close() });
  }

  if (all || command === "producer") {
    const redis = createRedis(config.redisUrl);
    const registry = new Registry();
    let draining = false;
    const health = healthRoutes({ redis, isDraining: () => draining });
    const metrics = metricsRoute(registry);
    const producer = await startProducer({
      config,
      redis,
      logger,
      metrics: createProducerMetrics(registry),
      extraRoutes: (req, res) => health(req, res) || metrics(req, res),
    });
    register({
      name: "producer",
      close: async () => {
        draining = true;
        await producer.close();
        redis.disconnect();
      },
    });
  }

  closeOnSignals(parts, logger);
  logger.info({ command }, "hydra-sync running; stop with SIGINT or SIGTERM");
}

async function send(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { url: { type: "string" }, "write-key": { type: "string" } },
  });
  const file = positionals[0];
  if (!file) {
    process.stderr.write("hydra-sync send: missing FILE; usage: hydra-sync send FILE.jsonl [--url URL] [--write-key KEY]\n");
    return 2;
  }

  const config = loadConfig();
  const writeKey = values["write-key"] ?? process.env.SEGMENT_WRITE_KEY ?? config.sources[0]?.writeKey ?? DEVELOPMENT_WRITE_KEY;
  const url = values.url ?? `http://${config.producerHost === "0.0.0.0" ? "127.0.0.1" : config.producerHost}:${config.producerPort}`;

  const report = await sendFile({ file, url, writeKey });
  for (const rejection of report.rejected.slice(0, 50)) {
    process.stderr.write(`line ${rejection.line}: rejected (${rejection.reason}): ${rejection.message}\n`);
  }
  if (report.rejected.length > 50) process.stderr.write(`... and ${report.rejected.length - 50} more rejected lines\n`);
  process.stdout.write(`${report.accepted} events accepted, ${report.rejected.length} rejected, in ${report.requests} ${report.requests === 1 ? "request" : "requests"}\n`);
  return report.rejected.length === 0 ? 0 : 1;
}

async function audiences(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { json: { type: "boolean" } } });
  const config = loadConfig();
  await assertRedisReachable(config.redisUrl);
  const redis = createRedis(config.redisUrl);
  try {
    const list = await listAudiences(redis, config);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return 0;
    }
    if (list.length === 0) {
      process.stdout.write("No Engage audiences yet.\n");
      return 0;
    }
    process.stdout.write(formatAudiences(list as unknown as Record<string, unknown>[]));
    return 0;
  } finally {
    redis.disconnect();
  }
}

function formatAudiences(list: Record<string, unknown>[]): string {
  const columns = Object.keys(list[0]);
  const rows = list.map((item) => columns.map((column) => formatCell(item[column], column)));
  const widths = columns.map((column, index) => Math.max(column.length, ...rows.map((row) => row[index].length)));
  const line = (cells: string[]) => cells.map((cell, index) => cell.padEnd(widths[index])).join("  ").trimEnd();
  return [line(columns), ...rows.map(line)].join("\n") + "\n";
}

/** Fields of an audience summary that hold epoch milliseconds. */
const TIME_FIELDS = /At$/;

function formatCell(value: unknown, column = ""): string {
  if (value === undefined || value === null) return "-";
  if (typeof value === "number" && TIME_FIELDS.test(column)) return new Date(value).toISOString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
