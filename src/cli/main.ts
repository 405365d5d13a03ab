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
    if (code !== undefined) process.exitCode = code;
  } catch (error) {
    if (error instanceof ConfigError || error instanceof RedisUnavailableError || error instanceof SendError) {
      process.stderr.write(`hydra-sync ${command}: ${error.message}\n`);
      process.exitCode = error instanceof ConfigError ? 2 : 1;
      return;
    }
    process.stderr.write(`hydra-sync ${command}: ${(error as Error)?.stack ?? error}\n`);
    process.exitCode = 1;
  }
}

void main();
