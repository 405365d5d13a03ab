import type { Logger } from "../logging/logger.js";

/** Something a role started that must be closed on shutdown. */
export interface Closeable {
  name: string;
  close(): Promise<void>;
}

/**
 * Closes every part in order when SIGINT or SIGTERM arrives (PM2 sends SIGINT,
 * systemd SIGTERM), then exits 0. Each part closes even when an earlier one fails.
 * A second signal exits at once with status 1.
 */
export function closeOnSignals(parts: Closeable[], logger: Logger, onClosed: () => void = () => process.exit(0)): void {
  let stopping = false;

  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal; exiting without finishing the shutdown");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    await closeAll(parts, logger);
    logger.info("shut down");
    onClosed();
  };

  process.on("SIGINT", (signal) => void stop(signal));
  process.on("SIGTERM", (signal) => void stop(signal));
}

/** Closes parts in order, logging and skipping past each failure. */
export async function closeAll(parts: Closeable[], logger: Logger): Promise<void> {
  for (const part of parts) {
    try {
      await part.close();
    } catch (error) {
      logger.error({ err: error, part: part.name }, "closing failed");
    }
  }
}
