/**
 * PM2 process file for hydra-sync: `pm2 start ecosystem.config.cjs` after `npm run build`.
 *
 * Every app runs dist/src/cli/main.js with one role. PM2 hands each app the environment
 * of the shell that ran `pm2 start`, so export the hydra-sync variables first (see
 * docs/operations.md). Two variables of this file set the process counts:
 *
 * - HYDRA_SYNC_PRODUCER_INSTANCES: producer processes in PM2's cluster mode, sharing
 *   PRODUCER_PORT. Default 2.
 * - HYDRA_SYNC_WORKER_INSTANCES: router and delivery worker processes in fork mode.
 *   Default 2.
 *
 * PM2 stops a process with SIGINT and kills it kill_timeout milliseconds later (1600 by
 * default). Every role closes on SIGINT and SIGTERM, and a worker lets its active jobs
 * finish, so kill_timeout is 30 s here (HYDRA_SYNC_KILL_TIMEOUT_MS to change it).
 */
function positiveInteger(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new Error(`Invalid ${name}=${JSON.stringify(text)}: use a whole number of at least 1.`);
  }
  return Number(text);
}

const killTimeoutMs = positiveInteger("HYDRA_SYNC_KILL_TIMEOUT_MS", 30_000);

/** Settings every role shares. */
const common = {
  script: "dist/src/cli/main.js",
  cwd: __dirname,
  kill_timeout: killTimeoutMs,
  // Restarts after a crash wait 100 ms, growing 1.5 times per restart up to 15 s (PM2 7), so a
  // Redis outage does not spin.
  exp_backoff_restart_delay: 100,
  merge_logs: true,
  env: { NODE_ENV: "production" },
};

module.exports = {
  apps: [
    {
      ...common,
      name: "hydra-sync-producer",
      args: "producer",
      exec_mode: "cluster",
      instances: positiveInteger("HYDRA_SYNC_PRODUCER_INSTANCES", 2),
      // `pm2 reload` starts a new instance and waits for it to listen before stopping an old one.
      listen_timeout: 10_000,
    },
    {
      ...common,
      name: "hydra-sync-worker",
      args: "worker",
      exec_mode: "fork",
      instances: positiveInteger("HYDRA_SYNC_WORKER_INSTANCES", 2),
    },
    {
      ...common,
      name: "hydra-sync-scheduler",
      args: "scheduler",
      exec_mode: "fork",
      instances: 1,
    },
    {
      ...common,
      name: "hydra-sync-admin",
      args: "admin",
      exec_mode: "fork",
      instances: 1,
    },
  ],
};
