import { readFileSync } from "node:fs";
import { z } from "zod";

import { ConfigError } from "../errors/config-error.js";
import { parseDurationMs } from "./duration.js";
import { sourcesFileSchema, type Source } from "./sources.js";

/** The Hydra simulator's address with the default SIM_PORT; HYDRA_API_URL defaults to the simulator on SIM_PORT. */
export const DEFAULT_HYDRA_API_URL = "http://127.0.0.1:4100";

/** Keys used only while HYDRA_API_URL points at the bundled simulator and no key is set. */
export const DEVELOPMENT_WRITE_KEY = "dev-write-key";
export const DEVELOPMENT_HYDRA_API_KEY = "dev-hydra-key";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function duration(min: number, max = Number.MAX_SAFE_INTEGER) {
  return z.string().transform((text, ctx) => {
    const ms = parseDurationMs(text);
    if (ms === undefined || ms < min || ms > max) {
      ctx.addIssue({ code: "custom", message: "invalid duration" });
      return z.NEVER;
    }
    return ms;
  });
}

function integer(min: number, max: number) {
  return z.string().regex(/^\d+$/).transform(Number).pipe(z.number().int().min(min).max(max));
}

function port() {
  return integer(0, 65_535);
}

const booleanText = z.enum(["true", "false", "1", "0"]).transform((text) => text === "true" || text === "1");

/** Minimum and maximum of the Engage sync interval, in milliseconds, drawn uniformly per sync. */
export interface IntervalRange {
  minMs: number;
  maxMs: number;
}

const intervalRange = z.string().transform((text, ctx): IntervalRange => {
  const [low, high = low] = text.split("-").map((part) => parseDurationMs(part));
  if (low === undefined || high === undefined || low < 1 || high < low) {
    ctx.addIssue({ code: "custom", message: "invalid interval" });
    return z.NEVER;
  }
  return { minMs: low, maxMs: high };
});

interface VariableSpec {
  schema: z.ZodType;
  defaultValue?: string;
  fix: string;
}

/**
 * Every environment variable hydra-sync reads, its default and the fix printed when a
 * value is invalid. The README's configuration table lists the same names.
 */
const VARIABLES = {
  REDIS_URL: { schema: z.string().url(), defaultValue: "redis://127.0.0.1:6379", fix: "use a URL such as redis://127.0.0.1:6379" },
  REDIS_PREFIX: { schema: z.string().regex(/^[A-Za-z0-9_.-]+$/), defaultValue: "hydra-sync", fix: "use letters, digits, '.', '_' or '-'" },
  PRODUCER_HOST: { schema: z.string().min(1), defaultValue: "127.0.0.1", fix: "use an address to bind, such as 127.0.0.1 or 0.0.0.0" },
  PRODUCER_PORT: { schema: port(), defaultValue: "3000", fix: "use a TCP port from 0 to 65535" },
  SIM_HOST: { schema: z.string().min(1), defaultValue: "127.0.0.1", fix: "use an address to bind, such as 127.0.0.1" },
  SIM_PORT: { schema: port(), defaultValue: "4100", fix: "use a TCP port from 0 to 65535" },
  ADMIN_HOST: { schema: z.string().min(1), defaultValue: "127.0.0.1", fix: "use an address to bind, such as 127.0.0.1" },
  ADMIN_PORT: { schema: port(), defaultValue: "3001", fix: "use a TCP port from 0 to 65535" },
  ADMIN_USER: { schema: z.string().min(1).optional(), fix: "set a user name for the admin server's HTTP Basic authentication" },
  ADMIN_PASSWORD: { schema: z.string().min(1).optional(), fix: "set a password for the admin server's HTTP Basic authentication" },
  ADMIN_READ_ONLY: { schema: booleanText, defaultValue: "false", fix: "use true or false" },
  HYDRA_API_URL: { schema: z.string().url().optional(), fix: "use the base URL of the Hydra API, such as https://api.hydra.example.com" },
  HYDRA_API_KEY: { schema: z.string().min(1).optional(), fix: "set the Hydra API key of the destination" },
  SEGMENT_WRITE_KEY: { schema: z.string().min(1).optional(), fix: "set the write key that Segment sources send" },
  SOURCES_FILE: { schema: z.string().min(1).optional(), fix: "point it at a JSON file with a list of { name, writeKey, hydraApiKey }" },
  WEBHOOK_SECRET: { schema: z.string().min(1).optional(), fix: "set the shared secret of the Segment Webhooks destination" },
  DEDUPE_WINDOW: { schema: duration(0), defaultValue: "24h", fix: 'use a duration such as "24h" ("0" turns deduplication off)' },
  BATCH_MAX_EVENTS: { schema: integer(1, 500), defaultValue: "500", fix: "use a whole number from 1 to 500, the most Hydra takes in one request" },
  BATCH_MAX_BYTES: { schema: integer(1_024, 524_288), defaultValue: "524288", fix: "use a whole number of bytes from 1024 to 524288, the largest body Hydra takes" },
  BATCH_LINGER_MS: { schema: duration(0, 60_000), defaultValue: "250", fix: 'use milliseconds from 0 to 60000, such as "250" or "250ms"' },
  HYDRA_RETRY_WINDOW: { schema: duration(1_000), defaultValue: "4h", fix: 'use a duration of at least 1s, such as "4h"' },
  HYDRA_BACKOFF_BASE: { schema: duration(1, 3_600_000), defaultValue: "1s", fix: 'use a duration such as "1s"' },
  HYDRA_BACKOFF_MAX: { schema: duration(1, 86_400_000), defaultValue: "15m", fix: 'use a duration such as "15m"' },
  HYDRA_PAUSE_RETRY: { schema: duration(1, 86_400_000), defaultValue: "5m", fix: 'use a duration such as "5m"' },
  HYDRA_TIMEOUT: { schema: duration(100, 600_000), defaultValue: "10s", fix: 'use a duration from 100ms to 10m, such as "10s"' },
  PARTITIONS: { schema: integer(1, 1_024), defaultValue: "16", fix: "use a whole number from 1 to 1024; keep it unchanged while events are queued" },
  WORKER_CONCURRENCY: { schema: integer(1, 1_000), defaultValue: "32", fix: "use a whole number from 1 to 1000" },
  LANE_LEASE_TTL: { schema: duration(500, 600_000), defaultValue: "10s", fix: 'use a duration from 500ms to 10m, such as "10s"' },
  JOB_LOCK_DURATION: { schema: duration(500, 3_600_000), defaultValue: "30s", fix: 'use a duration from 500ms to 1h, such as "30s"' },
  STREAM_RETENTION: { schema: duration(60_000), defaultValue: "24h", fix: 'use a duration of at least 1m, such as "24h"' },
  REJECTED_RETENTION: { schema: duration(60_000), defaultValue: "7d", fix: 'use a duration of at least 1m, such as "7d"' },
  COMPLETED_JOB_RETENTION: { schema: duration(0), defaultValue: "1h", fix: 'use a duration such as "1h"' },
  // A completed job keeps its events (about 1 KB each), so 1000 full jobs cost about 0.5 GB.
  COMPLETED_JOB_COUNT: { schema: integer(0, 10_000_000), defaultValue: "1000", fix: "use a whole number of completed jobs to keep" },
  ENGAGE_INITIAL_SYNC_DELAY: { schema: duration(0), defaultValue: "6h", fix: 'use a duration such as "6h"' },
  ENGAGE_SYNC_INTERVAL: { schema: intervalRange, defaultValue: "2h-3h", fix: 'use a duration or a range such as "2h-3h"' },
  LOG_LEVEL: { schema: z.enum(LOG_LEVELS), defaultValue: "info", fix: `use one of ${LOG_LEVELS.join(", ")}` },
} satisfies Record<string, VariableSpec>;

type Variables = typeof VARIABLES;
type ParsedVariables = { [K in keyof Variables]: z.output<Variables[K]["schema"]> };

/** Settings of one hydra-sync process, parsed and checked once at start-up. */
export interface Config {
  redisUrl: string;
  /** Prefix of every Redis key hydra-sync and its BullMQ queues write. @defaultValue "hydra-sync" */
  redisPrefix: string;
  producerHost: string;
  producerPort: number;
  simulatorHost: string;
  simulatorPort: number;
  adminHost: string;
  adminPort: number;
  adminUser?: string;
  adminPassword?: string;
  adminReadOnly: boolean;
  hydraApiUrl: string;
  /** True while HYDRA_API_URL is unset or points at the bundled simulator on SIM_PORT. */
  usesSimulator: boolean;
  sources: Source[];
  webhookSecret?: string;
  dedupeWindowMs: number;
  maxBatchEvents: number;
  maxBatchBytes: number;
  lingerMs: number;
  retryWindowMs: number;
  hydraTimeoutMs: number;
  /** First retry delay of a failed batch before jitter; doubles each attempt. @defaultValue 1s */
  backoffBaseMs: number;
  /** Maximum retry delay of a failed batch. @defaultValue 15m */
  backoffMaxMs: number;
  /** Delay between tries of a Hydra API key paused after 401 or 403. @defaultValue 5m */
  pauseRetryMs: number;
  partitions: number;
  workerConcurrency: number;
  /** How long a router's lease on a lane lasts without renewal; a dead router's lanes move after it. @defaultValue 10s */
  laneLeaseTtlMs: number;
  /** BullMQ lock duration of a delivery job; a killed worker's job runs again after it. @defaultValue 30s */
  jobLockDurationMs: number;
  streamRetentionMs: number;
  rejectedRetentionMs: number;
  completedJobRetentionMs: number;
  completedJobCount: number;
  engageInitialSyncDelayMs: number;
  engageSyncInterval: IntervalRange;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Start-up warnings to log once a logger exists, such as development keys in use. */
  warnings: string[];
}

function parseVariables(env: NodeJS.ProcessEnv): ParsedVariables {
  const parsed: Record<string, unknown> = {};

  for (const [name, spec] of Object.entries(VARIABLES) as [string, VariableSpec][]) {
    const raw = env[name] === "" ? undefined : env[name];
    const value = raw ?? spec.defaultValue;
    const result = spec.schema.safeParse(value);
    if (!result.success) {
      const shown = raw === undefined ? "(not set)" : JSON.stringify(raw);
      throw new ConfigError(`Invalid configuration: ${name}=${shown} is not valid; ${spec.fix}.`);
    }
    parsed[name] = result.data;
  }

  return parsed as ParsedVariables;
}

function loadSources(vars: ParsedVariables, usesSimulator: boolean, warnings: string[]): Source[] {
  if (vars.SOURCES_FILE) {
    let text: string;
    try {
      text = readFileSync(vars.SOURCES_FILE, "utf8");
    } catch (error) {
      throw new ConfigError(
        `Invalid configuration: SOURCES_FILE=${JSON.stringify(vars.SOURCES_FILE)} cannot be read (${(error as Error).message}); point it at a readable JSON file.`,
      );
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new ConfigError(
        `Invalid configuration: SOURCES_FILE=${JSON.stringify(vars.SOURCES_FILE)} is not valid JSON (${(error as Error).message}); fix the file.`,
      );
    }

    const result = sourcesFileSchema.safeParse(json);
    if (!result.success) {
      const issue = result.error.issues[0];
      const where = issue.path.length > 0 ? `at ${issue.path.join(".")}` : "at the top level";
      throw new ConfigError(
        `Invalid configuration: SOURCES_FILE=${JSON.stringify(vars.SOURCES_FILE)} is invalid ${where}: ${issue.message}; use a list of { "name", "writeKey", "hydraApiKey" } with unique names and write keys.`,
      );
    }
    return result.data;
  }

  let writeKey = vars.SEGMENT_WRITE_KEY;
  let hydraApiKey = vars.HYDRA_API_KEY;
  if (usesSimulator) {
    if (!writeKey) {
      writeKey = DEVELOPMENT_WRITE_KEY;
      warnings.push(`SEGMENT_WRITE_KEY is not set, so the development write key "${DEVELOPMENT_WRITE_KEY}" is accepted; set SEGMENT_WRITE_KEY before exposing the producer.`);
    }
    if (!hydraApiKey) {
      hydraApiKey = DEVELOPMENT_HYDRA_API_KEY;
      warnings.push(`HYDRA_API_KEY is not set, so events go to the simulator with the development key "${DEVELOPMENT_HYDRA_API_KEY}"; set HYDRA_API_URL and HYDRA_API_KEY to deliver to Hydra.`);
    }
  }

  if (!writeKey) {
    throw new ConfigError("Invalid configuration: SEGMENT_WRITE_KEY is not set; set the write key that Segment sources send, or set SOURCES_FILE.");
  }
  if (!hydraApiKey) {
    throw new ConfigError("Invalid configuration: HYDRA_API_KEY is not set; set the Hydra API key of the destination, or set SOURCES_FILE.");
  }
  return [{ name: "default", writeKey, hydraApiKey }];
}

/**
 * Reads and checks the configuration from environment variables.
 *
 * @throws ConfigError naming the variable, the value and the fix, for the first invalid value.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const vars = parseVariables(env);
  const warnings: string[] = [];
  // Unset, HYDRA_API_URL points at the bundled simulator on SIM_PORT.
  const simulatorUrl = `http://127.0.0.1:${vars.SIM_PORT}`;
  const hydraApiUrl = (vars.HYDRA_API_URL ?? simulatorUrl).replace(/\/+$/, "");
  const usesSimulator = hydraApiUrl === simulatorUrl || hydraApiUrl === `http://localhost:${vars.SIM_PORT}`;

  if (Boolean(vars.ADMIN_USER) !== Boolean(vars.ADMIN_PASSWORD)) {
    throw new ConfigError("Invalid configuration: ADMIN_USER and ADMIN_PASSWORD must be set together; set both or neither.");
  }

  return {
    redisUrl: vars.REDIS_URL,
    redisPrefix: vars.REDIS_PREFIX,
    producerHost: vars.PRODUCER_HOST,
    producerPort: vars.PRODUCER_PORT,
    simulatorHost: vars.SIM_HOST,
    simulatorPort: vars.SIM_PORT,
    adminHost: vars.ADMIN_HOST,
    adminPort: vars.ADMIN_PORT,
    adminUser: vars.ADMIN_USER,
    adminPassword: vars.ADMIN_PASSWORD,
    adminReadOnly: vars.ADMIN_READ_ONLY,
    hydraApiUrl,
    usesSimulator,
    sources: loadSources(vars, usesSimulator, warnings),
    webhookSecret: vars.WEBHOOK_SECRET,
    dedupeWindowMs: vars.DEDUPE_WINDOW,
    maxBatchEvents: vars.BATCH_MAX_EVENTS,
    maxBatchBytes: vars.BATCH_MAX_BYTES,
    lingerMs: vars.BATCH_LINGER_MS,
    retryWindowMs: vars.HYDRA_RETRY_WINDOW,
    hydraTimeoutMs: vars.HYDRA_TIMEOUT,
    backoffBaseMs: vars.HYDRA_BACKOFF_BASE,
    backoffMaxMs: vars.HYDRA_BACKOFF_MAX,
    pauseRetryMs: vars.HYDRA_PAUSE_RETRY,
    partitions: vars.PARTITIONS,
    workerConcurrency: vars.WORKER_CONCURRENCY,
    laneLeaseTtlMs: vars.LANE_LEASE_TTL,
    jobLockDurationMs: vars.JOB_LOCK_DURATION,
    streamRetentionMs: vars.STREAM_RETENTION,
    rejectedRetentionMs: vars.REJECTED_RETENTION,
    completedJobRetentionMs: vars.COMPLETED_JOB_RETENTION,
    completedJobCount: vars.COMPLETED_JOB_COUNT,
    engageInitialSyncDelayMs: vars.ENGAGE_INITIAL_SYNC_DELAY,
    engageSyncInterval: vars.ENGAGE_SYNC_INTERVAL,
    logLevel: vars.LOG_LEVEL,
    warnings,
  };
}

/** Names and defaults of every variable, for the CLI's help text. */
export function describeVariables(): { name: string; defaultValue?: string }[] {
  return Object.entries(VARIABLES).map(([name, spec]) => ({
    name,
    defaultValue: name === "HYDRA_API_URL" ? "http://127.0.0.1:<SIM_PORT> (the bundled simulator)" : (spec as VariableSpec).defaultValue,
  }));
}
