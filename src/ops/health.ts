import type { IncomingMessage, ServerResponse } from "node:http";
import type { Redis } from "ioredis";

/** A route of a node:http server: returns true when it handled the request. */
export type RequestRoute = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface HealthRouteOptions {
  redis: Redis;
  /** True once the process stopped taking work, so /readyz responds with 503. */
  isDraining: () => boolean;
  /** Time to wait for Redis's PONG, in milliseconds. @defaultValue 1000 */
  redisTimeoutMs?: number;
}

/** Result of a readiness check, as /readyz returns it. */
export interface Readiness {
  ready: boolean;
  /** Reason the process is not ready; absent when ready. */
  reason?: string;
}

/** Sends PING and resolves false when no PONG comes within `timeoutMs`. */
async function pingRedis(redis: Redis, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });

  try {
    const pong = redis.ping().then(
      (reply) => reply === "PONG",
      () => false,
    );
    return await Promise.race([pong, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Checks that the process takes work: it is not draining and Redis replies to PING. */
export async function checkReadiness(options: HealthRouteOptions): Promise<Readiness> {
  if (options.isDraining()) return { ready: false, reason: "draining" };

  const answered = await pingRedis(options.redis, options.redisTimeoutMs ?? 1_000);
  return answered ? { ready: true } : { ready: false, reason: "redis unreachable" };
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(req.method === "HEAD" ? undefined : JSON.stringify(body));
}

/**
 * Returns a route for GET /healthz and GET /readyz. /healthz responds with 200 while the
 * process runs. /readyz responds with 200 when Redis replies to PING and the process is
 * not draining, else with 503 and the reason, so a load balancer stops sending requests.
 */
export function healthRoutes(options: HealthRouteOptions): RequestRoute {
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;

    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      sendJson(req, res, 200, { status: "ok" });
      return true;
    }
    if (path !== "/readyz") return false;

    void checkReadiness(options).then((readiness) => {
      if (readiness.ready) sendJson(req, res, 200, { status: "ready" });
      else sendJson(req, res, 503, { status: "not ready", reason: readiness.reason });
    });
    return true;
  };
}
