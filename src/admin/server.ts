import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import type { Queue } from "bullmq";
import express, { type NextFunction, type Request, type Response } from "express";
import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { listAudiences as listEngageAudiences } from "../engage/index.js";
import { ConfigError } from "../errors/config-error.js";
import type { Logger } from "../logging/logger.js";
import { ServiceMetrics } from "../metrics/service-metrics.js";
import type { ListAudiences } from "../ops/audiences.js";
import { healthRoutes } from "../ops/health.js";
import { openServiceQueues } from "../ops/queues.js";
import { createRedis } from "../redis/connection.js";
import { basicAuth } from "./basic-auth.js";
import { BULL_BOARD_PATH, createBullBoardRouter } from "./bull-board.js";

/** Hosts that only this machine can reach; the admin server may run without credentials there. */
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/** Maximum wait on close for open connections to finish before they are cut, in milliseconds. */
const CLOSE_GRACE_MS = 5_000;

export interface AdminServerOptions {
  logger: Logger;
  /** Connection to share; when absent the server opens one and closes it on close(). */
  redis?: Redis;
  /** Engage audience list for GET /v1/audiences and /metrics. @defaultValue src/engage's listAudiences */
  listAudiences?: ListAudiences;
}

/** A running admin server. */
export interface AdminServer {
  /** Base URL, such as http://127.0.0.1:3001. */
  url: string;
  port: number;
  /** True once close() began; /readyz then responds with 503. */
  isDraining(): boolean;
  /** Stops taking requests, waits for open ones (at most 5 s), then closes queues and Redis. */
  close(): Promise<void>;
}

/**
 * Checks the admin server's authentication settings.
 *
 * @throws ConfigError when neither ADMIN_USER nor ADMIN_PASSWORD is set and ADMIN_HOST
 * is not a loopback address. Not retryable.
 */
export function assertAdminAccessConfigured(config: Config): void {
  if (config.adminUser && config.adminPassword) return;
  if (LOOPBACK_HOSTS.has(config.adminHost)) return;

  throw new ConfigError(
    `Invalid configuration: ADMIN_HOST=${JSON.stringify(config.adminHost)} is not a loopback address and ADMIN_USER and ADMIN_PASSWORD are not set, ` +
      "so the admin server would let anyone on the network replay and remove jobs; set ADMIN_USER and ADMIN_PASSWORD, or set ADMIN_HOST=127.0.0.1.",
  );
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

function buildApp(config: Config, options: AdminServerOptions, redis: Redis, queues: Queue[], isDraining: () => boolean) {
  const { logger } = options;
  const listAudiences = options.listAudiences ?? listEngageAudiences;
  const app = express();
  app.disable("x-powered-by");

  // Health checks stay open so that load balancers and PM2 need no credentials.
  const health = healthRoutes({ redis, isDraining });
  app.use((req, res, next) => {
    if (!health(req, res)) next();
  });

  if (config.adminUser && config.adminPassword) {
    app.use(basicAuth({ user: config.adminUser, password: config.adminPassword }, logger));
  }

  const metrics = new ServiceMetrics({ redis, config, queues, listAudiences, logger });
  app.get("/metrics", async (_req, res) => {
    const text = await metrics.render();
    res.set("content-type", metrics.contentType).set("cache-control", "no-store").send(text);
  });

  app.get("/v1/audiences", async (_req, res) => {
    res.json({ audiences: await listAudiences(redis, config) });
  });

  app.use(BULL_BOARD_PATH, createBullBoardRouter(queues, config.adminReadOnly));
  app.get("/", (_req, res) => res.redirect(BULL_BOARD_PATH));

  app.use((req, res) => {
    res.status(404).json({ error: `Not found: ${req.method} ${req.path}` });
  });
  app.use((error: Error, req: Request, res: Response, _next: NextFunction) => {
    logger.error({ err: error, method: req.method, path: req.path }, "admin request failed");
    if (!res.headersSent) res.status(500).json({ error: `Request failed: ${error.message}` });
  });

  return app;
}

/**
 * Starts the admin server on ADMIN_HOST:ADMIN_PORT: Bull Board at /admin/queues over
 * every queue the service uses, GET /v1/audiences, /metrics, and open /healthz and
 * /readyz. Every other path requires HTTP Basic credentials when ADMIN_USER and
 * ADMIN_PASSWORD are set.
 *
 * @throws ConfigError when the server would listen beyond loopback without credentials.
 */
export async function startAdmin(config: Config, options: AdminServerOptions): Promise<AdminServer> {
  assertAdminAccessConfigured(config);
  const { logger } = options;

  if (!config.adminUser) {
    logger.warn(
      { host: config.adminHost },
      "admin server runs without authentication because ADMIN_USER and ADMIN_PASSWORD are not set; it listens on loopback only",
    );
  }

  const ownsRedis = options.redis === undefined;
  const redis = options.redis ?? createRedis(config.redisUrl);
  const queues = openServiceQueues(config, redis);

  let draining = false;
  const app = buildApp(config, options, redis, queues, () => draining);

  let server: Server;
  try {
    server = await new Promise((resolve, reject) => {
      const listening = app.listen(config.adminPort, config.adminHost, (error?: Error) => {
        if (error) reject(error);
        else resolve(listening);
      });
    });
  } catch (error) {
    // Listening failed (for example EADDRINUSE): release what this call opened.
    await Promise.all(queues.map((queue) => queue.close()));
    if (ownsRedis) redis.disconnect();
    throw error;
  }

  const { port } = server.address() as AddressInfo;
  const url = `http://${hostForUrl(config.adminHost)}:${port}`;
  logger.info({ url, bullBoard: `${url}${BULL_BOARD_PATH}`, readOnly: config.adminReadOnly }, "admin server listening");

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      await closed;
      clearTimeout(cut);

      await Promise.all(queues.map((queue) => queue.close()));
      if (ownsRedis) await redis.quit();
      logger.info({ url }, "admin server stopped");
    })();
    return closing;
  };

  return { url, port, isDraining: () => draining, close };
}
