#!/usr/bin/env node
import { ConfigError } from "../errors/config-error.js";
import { RedisUnavailableError } from "../redis/connection.js";
import { runCommand } from "./commands.js";
import { SendError } from "./send.js";

/**
 * hydra-sync's command line. Expected failures (invalid configuration, no Redis, an
 * unreachable producer) print one line and exit non-zero; anything else prints its stack.
 */
async function main(): Promise<void> {
  const [command = "help", ...args] = process.argv.slice(2);
  try {
    const code = await runCommand(command, args);
    // A tool command is done here; a role returns undefined and runs until a signal.
    if (code !== undefined) exitAfterFlush(code);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof RedisUnavailableError || error instanceof SendError) {
      process.stderr.write(`hydra-sync ${command}: ${error.message}\n`);
      exitAfterFlush(error instanceof ConfigError ? 2 : 1);
      return;
    }
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code === "EADDRINUSE" || code === "EACCES") {
      const { address, port } = error as NodeJS.ErrnoException & { address?: string; port?: number };
      process.stderr.write(
        `hydra-sync ${command}: cannot listen on ${address}:${port} (${code}); stop the process that uses it, or set PRODUCER_PORT, ADMIN_PORT or SIM_PORT to a free port.\n`,
      );
      exitAfterFlush(1);
      return;
    }
    process.stderr.write(`hydra-sync ${command}: ${(error as Error)?.stack ?? error}\n`);
    exitAfterFlush(1);
  }
}

/** Exits once standard output and error are flushed, whatever timers or sockets a library left open. */
function exitAfterFlush(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

void main();
