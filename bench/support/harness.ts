/**
 * Shared pieces of the benchmarks: child processes for the hydra-sync roles and the
 * helper servers, loopback ports, Redis clean-up under a prefix, the machine summary and
 * table printing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { Redis } from "ioredis";
import { request } from "undici";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** Write key and Hydra API key of the one source every benchmark configures. */
export const BENCH_WRITE_KEY = "bench-write-key";
export const BENCH_HYDRA_API_KEY = "bench-hydra-key";
export const BENCH_AUTHORIZATION = `Basic ${Buffer.from(`${BENCH_WRITE_KEY}:`).toString("base64")}`;

/** Repository root, found from this file's place in dist/bench/support. */
export const REPOSITORY = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CLI_MAIN = join(REPOSITORY, "dist", "src", "cli", "main.js");
const SUPPORT_DIR = dirname(fileURLToPath(import.meta.url));

/** Lines of a child's output kept to explain a failure. */
const OUTPUT_TAIL_LINES = 40;

/** Returns a Redis key prefix of its own for one benchmark run, so runs never share keys on a shared server. */
export function benchPrefix(label: string): string {
  return `hs-bench-${label}-${randomUUID().slice(0, 8)}`;
}

/** Asks the OS for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("the OS returned no TCP port");
  return address.port;
}

export interface ChildOptions {
  /** Name used in messages, such as "producer". */
  name: string;
  /** Node.js options placed before the script, such as --cpu-prof. */
  nodeArgs?: string[];
  /** Runs `file` as a program, such as redis-server, instead of as a Node.js script. */
  program?: boolean;
  env?: Record<string, string>;
  /** Copies the child's output to this process's standard error. */
  echo?: boolean;
}

/**
 * A child process started by a benchmark: a Node.js script, or a program when
 * options.program is set. Its output is read continuously, because a full pipe would
 * block the child's synchronous logger, and the last lines are kept.
 */
export class BenchChild {
  readonly process: ChildProcess;
  private readonly tail: string[] = [];
  private readonly lineWaiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  private exited = false;
  private readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    file: string,
    args: string[],
    private readonly options: ChildOptions,
  ) {
    const [command, commandArgs] = options.program ? [file, args] : [process.execPath, [...(options.nodeArgs ?? []), file, ...args]];
    this.process = spawn(command, commandArgs, {
      cwd: REPOSITORY,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exit = new Promise((resolveExit) => {
      this.process.once("exit", (code, signal) => {
        this.exited = true;
        resolveExit({ code, signal });
      });
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      let pending = "";
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) this.onLine(line);
      });
    }
  }

  get name(): string {
    return this.options.name;
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exited;
  }

  /** Returns the child's last output lines, for error messages. */
  outputTail(): string {
    return this.tail.join("\n");
  }

  /**
   * Resolves with the first output line that matches the pattern.
   * @throws Error when the child exits or timeoutMs passes first
   */
  async waitForLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    const found = this.tail.find((line) => pattern.test(line));
    if (found !== undefined) return found;

    let timer: NodeJS.Timeout | undefined;
    const line = new Promise<string>((resolveLine) => this.lineWaiters.push({ pattern, resolve: resolveLine }));
    const failure = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.options.name} printed no line matching ${pattern} within ${timeoutMs} ms; its last output:\n${this.outputTail()}`)), timeoutMs);
      void this.exit.then(({ code, signal }) => reject(new Error(`${this.options.name} exited (code ${code}, signal ${signal}) before it was ready; its last output:\n${this.outputTail()}`)));
    });
    try {
      return await Promise.race([line, failure]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a signal to this child only, by its process id. */
  signal(signal: NodeJS.Signals): void {
    if (!this.exited) this.process.kill(signal);
  }

  /** Waits for the child to exit, at most timeoutMs; returns false when it is still running. */
  async waitForExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return true;
    return settlesWithin(this.exit, timeoutMs);
  }

  /** Stops the child with SIGTERM (a graceful shutdown that also writes --cpu-prof files), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited) return;
    this.signal("SIGTERM");
    if (await this.waitForExit(graceMs)) return;
    process.stderr.write(`${this.options.name} (pid ${this.pid}) did not stop within ${graceMs} ms of SIGTERM; sending SIGKILL\n`);
    this.signal("SIGKILL");
    await this.waitForExit(5_000);
  }

  private onLine(line: string): void {
    if (this.options.echo) process.stderr.write(`[${this.options.name}] ${line}\n`);
    this.tail.push(line);
    if (this.tail.length > OUTPUT_TAIL_LINES) this.tail.shift();
    for (let i = this.lineWaiters.length - 1; i >= 0; i--) {
      const waiter = this.lineWaiters[i];
      if (waiter.pattern.test(line)) {
        this.lineWaiters.splice(i, 1);
        waiter.resolve(line);
      }
    }
  }
}

/**
 * Environment of a hydra-sync role for a benchmark: one source, a prefix of its own, the
 * simulator as Hydra, and warnings-only logs unless the caller overrides LOG_LEVEL.
 */
export function roleEnv(prefix: string, hydraUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL,
    REDIS_PREFIX: prefix,
    HYDRA_API_URL: hydraUrl,
    SEGMENT_WRITE_KEY: BENCH_WRITE_KEY,
    HYDRA_API_KEY: BENCH_HYDRA_API_KEY,
    LOG_LEVEL: "warn",
    ...extra,
  };
}

/** Starts `hydra-sync producer` in a child process and resolves once /readyz responds 200. */
export async function startProducerChild(prefix: string, hydraUrl: string, options: { env?: Record<string, string>; nodeArgs?: string[]; echo?: boolean } = {}): Promise<{ child: BenchChild; url: string }> {
  const port = await freePort();
  const child = new BenchChild(CLI_MAIN, ["producer"], {
    name: "producer",
    nodeArgs: options.nodeArgs,
    echo: options.echo,
    env: roleEnv(prefix, hydraUrl, { PRODUCER_HOST: "127.0.0.1", PRODUCER_PORT: String(port), ...options.env }),
  });
  const url = `http://127.0.0.1:${port}`;
  await stopOnFailure(child, waitForHttp(`${url}/readyz`, child, 20_000));
  return { child, url };
}

/** Starts `hydra-sync worker` in a child process and resolves once its delivery worker started. */
export async function startWorkerChild(prefix: string, hydraUrl: string, options: { env?: Record<string, string>; nodeArgs?: string[]; echo?: boolean; name?: string } = {}): Promise<BenchChild> {
  const child = new BenchChild(CLI_MAIN, ["worker"], {
    name: options.name ?? "worker",
    nodeArgs: options.nodeArgs,
    echo: options.echo,
    // Info level for the start-up line, whatever the caller set; a worker logs no line
    // per delivered batch at info.
    env: { ...roleEnv(prefix, hydraUrl, options.env), LOG_LEVEL: "info" },
  });
  await stopOnFailure(child, child.waitForLine(/"msg":"delivery worker started"/, 20_000));
  return child;
}

/** Starts the Hydra simulator with recordEvents off in a child process (bench/support/simulator-child). */
export async function startSimulatorChild(options: { nodeArgs?: string[]; echo?: boolean } = {}): Promise<{ child: BenchChild; url: string }> {
  const port = await freePort();
  const child = new BenchChild(join(SUPPORT_DIR, "simulator-child.js"), [String(port)], { name: "simulator", nodeArgs: options.nodeArgs, echo: options.echo });
  await stopOnFailure(child, child.waitForLine(/^simulator listening/, 10_000));
  return { child, url: `http://127.0.0.1:${port}` };
}

/** Starts the bare node:http server (bench/support/bare-server) in a child process. */
export async function startBareServerChild(options: { nodeArgs?: string[] } = {}): Promise<{ child: BenchChild; url: string }> {
  const port = await freePort();
  const child = new BenchChild(join(SUPPORT_DIR, "bare-server.js"), [String(port)], { name: "bare server", nodeArgs: options.nodeArgs });
  await stopOnFailure(child, child.waitForLine(/^bare server listening/, 10_000));
  return { child, url: `http://127.0.0.1:${port}` };
}

/**
 * Waits for a child's start-up step and stops the child when the step fails, so a
 * child that never became ready does not outlive the benchmark.
 */
export async function stopOnFailure<T>(child: BenchChild, step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (error) {
    await child.stop(5_000);
    throw error;
  }
}

/** Polls a URL until it responds 200. */
export async function waitForHttp(url: string, child: BenchChild, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.hasExited) throw new Error(`${url}: the process exited before it responded; its last output:\n${child.outputTail()}`);
    try {
      const response = await request(url, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await response.body.dump();
      if (response.statusCode === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${url} did not respond 200 within ${timeoutMs} ms; the process's last output:\n${child.outputTail()}`);
    await sleep(100);
  }
}

/** GETs a JSON document from one of the servers a benchmark started. */
export async function getJson<T>(url: string): Promise<T> {
  const response = await request(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  if (response.statusCode !== 200) throw new Error(`GET ${url} failed with status ${response.statusCode}: ${await response.body.text()}`);
  return (await response.body.json()) as T;
}

export async function postJson(url: string, body: unknown): Promise<void> {
  const response = await request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await response.body.text();
  if (response.statusCode >= 300) throw new Error(`POST ${url} failed with status ${response.statusCode}: ${text}`);
}

/** Simulator counters, as GET /_sim/stats returns them. */
export interface SimulatorCounters {
  requests: number;
  batches: number;
  eventsAccepted: number;
  duplicates: number;
  rejected: number;
  requestsByStatus: Record<string, number>;
}

export interface LatencyFigures {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

/**
 * Polls the simulator's counters every intervalMs until `eventsAccepted` reaches count.
 * Returns the time (performance.now()) of the first poll that saw it, and the samples.
 * @throws Error when timeoutMs passes first, with the count reached
 */
export async function waitForAccepted(
  simulatorUrl: string,
  count: number,
  timeoutMs: number,
  intervalMs = 100,
): Promise<{ doneAt: number; samples: { at: number; accepted: number }[] }> {
  const deadline = performance.now() + timeoutMs;
  const samples: { at: number; accepted: number }[] = [];
  for (;;) {
    const stats = await getJson<SimulatorCounters>(`${simulatorUrl}/_sim/stats`);
    const at = performance.now();
    samples.push({ at, accepted: stats.eventsAccepted });
    if (stats.eventsAccepted >= count) return { doneAt: at, samples };
    if (at > deadline) throw new Error(`the simulator accepted ${stats.eventsAccepted} of ${count} events within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/**
 * Deletes every key under a prefix with SCAN and UNLINK. Never FLUSHALL or FLUSHDB:
 * the Redis server is shared.
 */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1_000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== "0");
  return deleted;
}

export function connectRedis(url = REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}

/** Cores, memory, CPU model, load average, Node.js and Redis versions, for the header of each benchmark. */
export async function describeMachine(redis: Redis): Promise<string> {
  const info = await redis.info("server");
  const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  const load = loadavg().map((value) => value.toFixed(2)).join(" ");
  const memoryGiB = (totalmem() / 1024 ** 3).toFixed(1);
  return `${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}), ${memoryGiB} GiB, node ${process.version}, Redis ${redisVersion}, load average ${load} at start`;
}

/** Waits for a promise at most timeoutMs; resolves false on timeout. The timer never outlives the wait. */
export async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * CPU time (user + system) of a process in seconds, read from /proc/<pid>/stat. Returns
 * NaN where /proc is missing (outside Linux).
 */
export function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, in clock ticks of USER_HZ, which is 100 on Linux.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds (user + system) that the Redis server used since it started, from INFO cpu. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  return Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]);
}

/** CPU time of groups of processes, of the Redis server and of this process at one moment. */
export interface CpuSample {
  at: number;
  groups: Map<string, number>;
  redis: number;
  self: number;
}

/** Reads the CPU time used so far by each group of child processes, by Redis and by this process. */
export async function sampleCpu(redis: Redis, groups: Record<string, number[]>): Promise<CpuSample> {
  const usage = process.cpuUsage();
  return {
    at: performance.now(),
    groups: new Map(Object.entries(groups).map(([name, pids]) => [name, pids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0)])),
    redis: await redisCpuSeconds(redis),
    self: (usage.user + usage.system) / 1e6,
  };
}

/**
 * Returns the CPU each group used between two samples as a share of one core, formatted
 * as "name 85%". A group missing from `before` started in between and counts from zero.
 */
export function formatCpuShares(before: CpuSample, after: CpuSample, selfName: string): string {
  const seconds = (after.at - before.at) / 1_000;
  const share = (used: number) => `${formatNumber((100 * used) / seconds)}%`;
  const parts = [...after.groups].map(([name, used]) => `${name} ${share(used - (before.groups.get(name) ?? 0))}`);
  parts.push(`Redis ${share(after.redis - before.redis)}`, `${selfName} ${share(after.self - before.self)}`);
  return parts.join(", ");
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Formats a number with thousands separators and `digits` decimals. */
export function formatNumber(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Prints a Markdown table to standard output. */
export function printTable(headers: string[], rows: string[][]): void {
  const alignment = headers.map((_, index) => (index === 0 ? "---" : "---:"));
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  console.log(line(headers));
  console.log(line(alignment));
  for (const row of rows) console.log(line(row));
}

/**
 * Turns repeated `--env NAME=VALUE` options into environment variables for a hydra-sync
 * role, such as DEDUPE_WINDOW=0.
 * @throws Error for an option without "="
 */
export function parseEnvOptions(options: string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const option of options ?? []) {
    const equals = option.indexOf("=");
    if (equals <= 0) throw new Error(`Invalid --env ${option}: use NAME=VALUE, such as --env DEDUPE_WINDOW=0.`);
    env[option.slice(0, equals)] = option.slice(equals + 1);
  }
  return env;
}

/**
 * Runs `main`, prints an error's stack and sets a non-zero exit code on failure. With
 * exitWhenDone, the process exits once `main` settled, whatever handles remain open.
 */
export function runMain(main: () => Promise<void>, options: { exitWhenDone?: boolean } = {}): void {
  main()
    .catch((error: unknown) => {
      console.error(error instanceof Error ? error.stack : error);
      process.exitCode = 1;
    })
    .finally(() => {
      if (options.exitWhenDone) process.stdout.write("", () => process.exit());
    });
}

/**
 * Stops every child in reverse order of start, then removes the run's Redis keys. Each
 * step runs even when an earlier one fails.
 */
export async function cleanUp(children: (BenchChild | undefined)[], redis: Redis, prefixes: string[]): Promise<void> {
  for (const child of [...children].reverse()) {
    try {
      await child?.stop();
    } catch (error) {
      console.error(`stopping a child process failed: ${(error as Error).message}`);
    }
  }
  for (const prefix of prefixes) {
    try {
      await deletePrefix(redis, prefix);
    } catch (error) {
      console.error(`deleting the keys under ${prefix} failed: ${(error as Error).message}`);
    }
  }
}
