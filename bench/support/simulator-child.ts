/**
 * The Hydra simulator with recordEvents off, as a process of its own for the
 * benchmarks: it keeps counters, messageIds and latency, not event bodies.
 *
 * Usage: node dist/bench/support/simulator-child.js PORT
 * Listens on 127.0.0.1:PORT, prints "simulator listening on <url>" once ready, and stops
 * on SIGTERM or SIGINT.
 */
import { createLogger } from "../../src/logging/logger.js";
import { startSimulator } from "../../src/simulator/index.js";

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? "0");
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`Invalid port ${process.argv[2]}: use a TCP port from 0 to 65535.`);

  const simulator = await startSimulator({ port, host: "127.0.0.1", logger: createLogger("warn"), recordEvents: false });
  console.log(`simulator listening on ${simulator.url}`);

  const stop = () => {
    void simulator.close().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
