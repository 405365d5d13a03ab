import { pino, type Logger } from "pino";

export type { Logger } from "pino";

/**
 * Paths that pino replaces with "[redacted]": write keys, Hydra API keys and
 * Authorization headers, wherever a component puts them in a log object.
 */
export const REDACTED_PATHS = [
  "writeKey",
  "*.writeKey",
  "hydraApiKey",
  "*.hydraApiKey",
  "apiKey",
  "*.apiKey",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "req.headers.authorization",
  "password",
  "*.password",
  "secret",
  "*.secret",
];

/** Creates the process's root logger, writing JSON lines to standard output. */
export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: "hydra-sync", pid: process.pid, ...base },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
