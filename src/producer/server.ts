import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import type { Logger } from "../logging/logger.js";
import { RequestError } from "./errors.js";
import type { TrackingHandler } from "./handler.js";
import { sendError, sendPreflight } from "./respond.js";
import { endpointOf } from "./routes.js";

/**
 * Maximum wait in close() for connections that stay open after every in-flight request
 * ended, such as a client that stopped in the middle of a request. They are closed then.
 */
const CLOSE_GRACE_MS = 10_000;

export interface HttpServerOptions {
  host: string;
  port: number;
  handler: TrackingHandler;
  logger: Logger;
  /** Returns true when it handled the request itself (/healthz, /readyz, /metrics). */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

/**
 * The producer's HTTP server: plain node:http, routing by path, and a drain on close
 * that lets in-flight requests finish their Redis writes.
 */
export class ProducerHttpServer {
  readonly server: Server;
  private inFlight = 0;
  private requestCount = 0;
  private drainingFlag = false;
  private idleWaiters: (() => void)[] = [];
  private closing?: Promise<void>;

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer((req, res) => this.dispatch(req, res));
  }

  /** Shared by every request, so that none allocates a closure of its own. */
  private readonly isDraining = (): boolean => this.drainingFlag;

  get draining(): boolean {
    return this.drainingFlag;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once("error", onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
  }

  /** Stops accepting connections and resolves once every in-flight request ended. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.drain();
    return this.closing;
  }

  private async drain(): Promise<void> {
    this.drainingFlag = true;

    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();

    await this.waitForIdle();

    // Responses sent while draining carry Connection: close, so connections end on their
    // own. One that still lingers gets a grace period before it is cut.
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  private waitForIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private readonly onResponseClose = (): void => {
    this.inFlight--;
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    this.inFlight++;
    res.on("close", this.onResponseClose);
    const requestId = ++this.requestCount;

    try {
      if (this.drainingFlag) res.setHeader("Connection", "close");
      if (this.options.extraRoutes?.(req, res)) return;

      if (this.drainingFlag) {
        sendError(res, new RequestError(503, "shutting_down", "The producer is shutting down; retry the request."), true);
        return;
      }

      const endpoint = endpointOf(req.url);
      if (endpoint === undefined) {
        sendError(res, new RequestError(404, "not_found", `No endpoint at ${req.method} ${(req.url ?? "").split("?")[0]}; use POST /v1/<type>, /v1/batch, /v1/import or /v1/webhook.`), false);
        return;
      }

      if (req.method === "OPTIONS") {
        sendPreflight(res);
        return;
      }
      if (req.method !== "POST") {
        sendError(res, new RequestError(405, "method_not_allowed", `The method ${req.method} is not allowed here; use POST.`), false);
        return;
      }

      this.options.handler.handle(req, res, endpoint, requestId, this.isDraining).catch((error: unknown) => {
        this.options.logger.error({ err: error, requestId }, "request failed with an unexpected error");
        res.destroy();
      });
    } catch (error) {
      this.options.logger.error({ err: error, requestId }, "request failed with an unexpected error");
      sendError(res, new RequestError(500, "internal_error", "The request failed with an internal error; retry it later."), this.drainingFlag);
    }
  }
}
