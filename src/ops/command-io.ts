import type { Config } from "../config/env.js";
import type { Logger } from "../logging/logger.js";

/** Output stream of a command, such as process.stdout or process.stderr. */
export interface TextSink {
  write(text: string): unknown;
}

/**
 * Context of one command run. Every field is optional so the CLI can pass what it has
 * and tests can capture the output.
 */
export interface CommandIo {
  /** Results: tables, JSON and the final count. @defaultValue process.stdout */
  stdout?: TextSink;
  /** Progress lines and errors. @defaultValue process.stderr */
  stderr?: TextSink;
  /** Configuration already loaded; when absent it is read from `env`. */
  config?: Config;
  /** Environment to read the configuration from when `config` is absent. @defaultValue process.env */
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** A CommandIo with every default filled in. */
export interface ResolvedIo {
  stdout: TextSink;
  stderr: TextSink;
  logger?: Logger;
}

export function resolveIo(io: CommandIo): ResolvedIo {
  return { stdout: io.stdout ?? process.stdout, stderr: io.stderr ?? process.stderr, logger: io.logger };
}

/** A command line that cannot be run as given. Not retryable: the message states what to fix. */
export class UsageError extends Error {
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit codes of the ops commands. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;
