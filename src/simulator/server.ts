import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { z } from "zod";

import type { Logger } from "../logging/logger.js";
import { handleBatchRequest, type BatchEndpointContext } from "./batch-endpoint.js";
import { FaultQueue, type FaultInput } from "./faults.js";
import { readBody, sendJson } from "./http.js";
import { SimulatorState, type RecordedBatch } from "./state.js";

export interface SimulatorOptions {
  /** TCP port; 0 lets the OS choose. */
  port: number;
  /** @defaultValue "127.0.0.1" */
  host?: string;
  logger: Logger;
  /**
   * Keeps event bodies, persons, companies and audiences. Off, only counters,
   * messageIds, request metadata and latency are kept, for benchmarks.
   * @defaultValue true
   */
  recordEvents?: boolean;
  /** API keys to accept; any other key gets 403. @defaultValue any non-empty key */
  apiKeys?: readonly string[];
  /** Clock for latency and record times, in epoch milliseconds. @defaultValue Date.now */
  now?: () => number;
}

/** A running Hydra simulator. */
export interface Simulator {
  readonly port: number;
  /** Base URL to give the Hydra client, such as http://127.0.0.1:4100. */
  readonly url: string;
  /** Recorded requests, events and profiles, for reading only. */
  readonly state: SimulatorState;
  /** Queues a fault for the next POST /v1/batch requests, as POST /_sim/faults does. */
  addFault(fault: FaultInput): void;
  clearFaults(): void;
  /** Clears records, counters and faults, as POST /_sim/reset does. */
  reset(): void;
  /**
   * Resolves once `count` events were accepted (duplicates not counted).
   * @throws Error when timeoutMs passes first
   */
  waitForEvents(count: number, timeoutMs?: number): Promise<void>;
  /** Emitted after each POST /v1/batch request, whatever the response. */
  on(event: "batch", listener: (batch: RecordedBatch) => void): this;
  off(event: "batch", listener: (batch: RecordedBatch) => void): this;
  close(): Promise<void>;
}

const DEFAULT_WAIT_MS = 10_000;

/** Largest body of a POST to /_sim/faults. */
const MAX_CONTROL_BODY_BYTES = 65_536;

/** Starts the simulator and resolves once it listens. */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const simulator = new HydraSimulator(options);
  await simulator.listen(options.port, options.host ?? "127.0.0.1");
  return simulator;
}

/**
 * A node:http server that implements Hydra's POST /v1/batch for the demo and the
 * tests, with inspection and fault routes under /_sim/.
 */
class HydraSimulator extends EventEmitter implements Simulator {
  readonly state: SimulatorState;
  private readonly faults = new FaultQueue();
  private readonly server: Server;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly batchContext: BatchEndpointContext;
  private readonly pendingDelays = new Set<() => void>();
  private batchCount = 0;
  private closed = false;
  private address: AddressInfo | undefined;

  constructor(options: SimulatorOptions) {
    super();
    this.logger = options.logger.child({ component: "hydra-simulator" });
    this.now = options.now ?? Date.now;
    this.state = new SimulatorState(options.recordEvents ?? true, this.now);
    this.server = createServer((request, response) => void this.route(request, response));

    this.batchContext = {
      state: this.state,
      apiKeys: options.apiKeys === undefined ? undefined : new Set(options.apiKeys),
      now: this.now,
      nextBatchId: () => ++this.batchCount,
      takeFault: (apiKey) => this.faults.take(apiKey),
      delay: (ms) => this.delay(ms),
      record: (batch) => {
        this.state.recordBatch(batch);
        this.logger.debug({ batchId: batch.id, idempotencyKey: batch.idempotencyKey, status: batch.status, events: batch.eventCount }, "Batch request handled");
        this.emit("batch", batch);
      },
    };
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  get url(): string {
    const host = this.address?.family === "IPv6" ? `[${this.address.address}]` : this.address?.address;
    return `http://${host}:${this.port}`;
  }

  async listen(port: number, host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.address = this.server.address() as AddressInfo;
    this.logger.info({ port: this.port, url: this.url }, "Hydra simulator listening");
  }

  addFault(fault: FaultInput): void {
    this.faults.add(fault);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  reset(): void {
    this.state.reset();
    this.faults.clear();
    this.batchCount = 0;
  }

  waitForEvents(count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    if (this.state.stats().eventsAccepted >= count) return Promise.resolve();

    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.state.stats().eventsAccepted < count) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${count} accepted events; ${this.state.stats().eventsAccepted} were accepted.`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("batch", check);
      };
      this.on("batch", check);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;

    for (const cancel of this.pendingDelays) cancel();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Idle keep-alive sockets and requests held by a noAnswer fault would keep close() waiting.
    this.server.closeAllConnections();
    await stopped;
    this.logger.info({ port: this.port }, "Hydra simulator stopped");
  }

  private delay(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);

    return new Promise((resolve) => {
      const cancel = () => {
        clearTimeout(timer);
        this.pendingDelays.delete(cancel);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.pendingDelays.delete(cancel);
        resolve(true);
      }, ms);
      this.pendingDelays.add(cancel);
    });
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://simulator.invalid");
    const method = request.method ?? "GET";

    try {
      if (url.pathname === "/v1/batch") {
        if (method !== "POST") return sendJson(response, 405, { error: "Use POST for /v1/batch." }, { allow: "POST" });
        return await handleBatchRequest(this.batchContext, request, response);
      }
      if (url.pathname.startsWith("/_sim/")) return await this.routeControl(method, url, request, response);
      return sendJson(response, 404, { error: `No route for ${method} ${url.pathname}.` });
    } catch (error) {
      if (request.destroyed || response.destroyed) {
        this.logger.debug({ err: error, path: url.pathname }, "Client went away during a simulator request");
        return;
      }
      this.logger.error({ err: error, path: url.pathname }, "Simulator request failed");
      sendJson(response, 500, { error: `The simulator failed: ${(error as Error).message}` });
    }
  }

  /** Inspection (GET) and control (POST, DELETE) routes under /_sim/. */
  private async routeControl(method: string, url: URL, request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = url.pathname.replace(/\/+$/, "");
    const query = url.searchParams;

    if (method === "GET") {
      if (path === "/_sim/stats") return sendJson(response, 200, this.state.stats());
      if (path === "/_sim/latency") return sendJson(response, 200, this.state.latency());
      if (path === "/_sim/batches") return sendJson(response, 200, { batches: this.state.batches(limitOf(query)) });
      if (path === "/_sim/events") {
        const filter = {
          type: query.get("type") ?? undefined,
          userId: query.get("userId") ?? undefined,
          messageId: query.get("messageId") ?? undefined,
          limit: limitOf(query),
        };
        return sendJson(response, 200, { events: this.state.events(filter) });
      }
      if (path === "/_sim/persons") return sendJson(response, 200, { persons: this.state.persons() });
      if (path.startsWith("/_sim/persons/")) {
        const id = decodeURIComponent(path.slice("/_sim/persons/".length));
        const person = this.state.person(id);
        return person ? sendJson(response, 200, person) : sendJson(response, 404, { error: `No person with userId or anonymousId ${JSON.stringify(id)}.` });
      }
      if (path === "/_sim/companies") return sendJson(response, 200, { companies: this.state.companies() });
      if (path === "/_sim/audiences") return sendJson(response, 200, { audiences: this.state.audiences() });
      if (path === "/_sim/faults") return sendJson(response, 200, { faults: this.faults.list() });
    }

    if (method === "POST" && path === "/_sim/reset") {
      await readBody(request, MAX_CONTROL_BODY_BYTES);
      this.reset();
      return sendJson(response, 200, { reset: true });
    }

    if (method === "POST" && path === "/_sim/faults") return this.postFaults(request, response);

    if (method === "DELETE" && path === "/_sim/faults") {
      return sendJson(response, 200, { cleared: this.faults.clear() });
    }

    return sendJson(response, 404, { error: `No route for ${method} ${path}.` });
  }

  /** Queues one fault, or a list of faults in order, from a JSON body. */
  private async postFaults(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const { body, overLimit } = await readBody(request, MAX_CONTROL_BODY_BYTES);
    if (overLimit) return sendJson(response, 413, { error: `A fault body must be at most ${MAX_CONTROL_BODY_BYTES} bytes.` });

    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch (error) {
      return sendJson(response, 400, { error: `The body is not valid JSON: ${(error as Error).message}` });
    }

    const inputs = Array.isArray(json) ? json : [json];
    try {
      // Check every fault before queueing any, so a bad list queues nothing.
      const checked = new FaultQueue();
      for (const input of inputs) checked.add(input as FaultInput);
      for (const input of inputs) this.faults.add(input as FaultInput);
    } catch (error) {
      const message = error instanceof z.ZodError ? z.prettifyError(error) : (error as Error).message;
      return sendJson(response, 400, { error: `Invalid fault: ${message}` });
    }

    return sendJson(response, 201, { queued: inputs.length, faults: this.faults.list() });
  }
}

function limitOf(query: URLSearchParams): number | undefined {
  const limit = Number(query.get("limit"));
  return Number.isInteger(limit) && limit > 0 ? limit : undefined;
}
