import { setTimeout as sleep } from "node:timers/promises";

import pRetry from "p-retry";
import { Pool } from "undici";

import packageJson from "../../package.json" with { type: "json" };
import { DeliveryError } from "../errors/delivery-error.js";
import type { Logger } from "../logging/logger.js";
import { backoffDelayMs } from "./backoff.js";
import { MAX_BATCH_EVENTS, MAX_BODY_BYTES } from "./limits.js";
import { toNetworkDeliveryError } from "./network-errors.js";
import { interpretResponse, readBodyText, type HydraResponse } from "./response.js";
import type { BatchRequest, EventResult, HydraClient } from "./types.js";

export interface HydraClientOptions {
  /** Base URL of the Hydra API, such as https://api.hydra.example.com; a path prefix is kept. */
  baseUrl: string;
  /** Limit of one request, from connecting to the end of the response body, in milliseconds. */
  timeoutMs: number;
  logger: Logger;
  /**
   * Retries inside one attempt after a connection error, a timeout or a 5xx but 501.
   * @defaultValue 2
   */
  quickRetries?: number;
  /** @defaultValue "hydra-sync/<package version>" */
  userAgent?: string;
  /** Clock for `sentAt` and Retry-After, in epoch milliseconds. @defaultValue Date.now */
  now?: () => number;
}

export const DEFAULT_QUICK_RETRIES = 2;

/** Bounds of the full-jitter wait before a quick retry: 0 to 200 ms, then 0 to 400 ms, at most 500 ms. */
const QUICK_RETRY_BASE_MS = 200;
const QUICK_RETRY_MAX_MS = 500;

const DEFAULT_USER_AGENT = `hydra-sync/${packageJson.version}`;

/** Visible ASCII only: anything else cannot travel in an HTTP header value unchanged. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

/**
 * Creates a client for Hydra's POST /v1/batch over an undici connection pool with
 * keep-alive. See HttpHydraClient for how each response is handled.
 */
export function createHydraClient(options: HydraClientOptions): HydraClient {
  return new HttpHydraClient(options);
}

/**
 * Sends each batch as one request, or as halves after a 413, and retries connection
 * errors, timeouts and 5xx a few times within the same attempt. Every longer wait
 * (429, 401/403, the retry window) belongs to the caller, which gets a DeliveryError.
 */
class HttpHydraClient implements HydraClient {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly timeoutMs: number;
  private readonly quickRetries: number;
  private readonly userAgent: string;
  private readonly now: () => number;
  private readonly logger: Logger;
  private readonly closing = new AbortController();

  constructor(options: HydraClientOptions) {
    const url = new URL(options.baseUrl);
    this.path = `${url.pathname.replace(/\/+$/, "")}/v1/batch`;
    this.timeoutMs = options.timeoutMs;
    this.quickRetries = options.quickRetries ?? DEFAULT_QUICK_RETRIES;
    this.userAgent = options.userAgent ?? DEFAULT_USER_AGENT;
    this.now = options.now ?? Date.now;
    this.logger = options.logger.child({ component: "hydra-client" });

    // NOTE: no undici RetryAgent. In undici 7 its retry handler waits at most maxTimeout
    // (30 s by default) whatever Retry-After says, and every longer wait belongs to the worker.
    this.pool = new Pool(url.origin, {
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  async sendBatch(request: BatchRequest): Promise<EventResult[]> {
    if (this.closing.signal.aborted) throw closedError();

    if (!HEADER_SAFE.test(request.apiKey)) {
      throw new DeliveryError(
        "The Hydra API key contains characters that an HTTP header cannot carry (only visible ASCII is allowed); fix the source's hydraApiKey.",
        "unauthorized",
        true,
      );
    }

    if (request.events.length === 0) return [];
    return this.sendPart(request.apiKey, request.idempotencyKey, request.events);
  }

  async close(): Promise<void> {
    if (this.closing.signal.aborted) return;

    // Quick-retry waits end at once; requests in flight finish (each within timeoutMs).
    this.closing.abort(closedError());
    await this.pool.close();
  }

  /**
   * Sends events under one Idempotency-Key and splits them in halves when they are too
   * large: after a 413, or before sending when they exceed 500 events or 512 KiB. The
   * halves get the keys `<key>.1` and `<key>.2`, so a retried batch splits the same way
   * under the same keys.
   */
  private async sendPart(apiKey: string, idempotencyKey: string, events: string[]): Promise<EventResult[]> {
    let tooLarge: DeliveryError;

    const bodyBytes = batchBodyBytes(events);
    if (events.length > MAX_BATCH_EVENTS || bodyBytes > MAX_BODY_BYTES) {
      tooLarge = new DeliveryError(
        `Hydra takes at most ${MAX_BATCH_EVENTS} events and ${MAX_BODY_BYTES} bytes in one request, and this part has ${events.length} event(s) in ${bodyBytes} bytes.`,
        "payload_too_large",
        false,
      );
    } else {
      try {
        return await this.sendWithQuickRetries(apiKey, idempotencyKey, events);
      } catch (error) {
        if (!(error instanceof DeliveryError) || error.code !== "payload_too_large") throw error;
        tooLarge = error;
      }
    }

    if (events.length === 1) {
      this.logger.warn(
        { idempotencyKey, bytes: bodyBytes, status: tooLarge.status, err: tooLarge.message },
        "An event is too large for Hydra even alone; it gets a permanent 413 result",
      );
      return [{ status: 413, error: tooLarge.message, retryable: false, code: "payload_too_large" }];
    }

    return this.sendHalves(apiKey, idempotencyKey, events, tooLarge);
  }

  /**
   * Sends the two halves in order. When the first half fails with a retryable error,
   * the second is not sent and the error is thrown, so the whole batch is retried and
   * one user's events keep their order. When both halves fail with the same code, that
   * error is thrown. Otherwise each half's outcome becomes its events' results.
   */
  private async sendHalves(apiKey: string, idempotencyKey: string, events: string[], cause: DeliveryError): Promise<EventResult[]> {
    const middle = Math.ceil(events.length / 2);
    const firstEvents = events.slice(0, middle);
    const secondEvents = events.slice(middle);

    this.logger.info(
      { idempotencyKey, events: events.length, status: cause.status, halves: [firstEvents.length, secondEvents.length] },
      "Splitting a batch that is too large for Hydra into halves",
    );

    const first = await settle(this.sendPart(apiKey, `${idempotencyKey}.1`, firstEvents));
    if (first instanceof DeliveryError && first.retryable) throw first;

    const second = await settle(this.sendPart(apiKey, `${idempotencyKey}.2`, secondEvents));
    if (first instanceof DeliveryError && second instanceof DeliveryError && first.code === second.code) throw first;

    for (const [suffix, outcome] of [[".1", first], [".2", second]] as const) {
      if (outcome instanceof DeliveryError) {
        this.logger.warn(
          { idempotencyKey: `${idempotencyKey}${suffix}`, code: outcome.code, status: outcome.status, err: outcome.message },
          "Half of a split batch failed; its events get the error as their result",
        );
      }
    }

    return [...resultsOf(first, firstEvents.length), ...resultsOf(second, secondEvents.length)];
  }

  private sendWithQuickRetries(apiKey: string, idempotencyKey: string, events: string[]): Promise<EventResult[]> {
    return pRetry(() => this.sendOnce(apiKey, idempotencyKey, events), {
      retries: this.quickRetries,
      // p-retry's own delay is off: shouldRetry waits with full jitter instead.
      minTimeout: 0,
      shouldRetry: async ({ error, attemptNumber }) => {
        if (!isQuickRetryable(error)) return false;

        const delayMs = backoffDelayMs(attemptNumber, QUICK_RETRY_BASE_MS, QUICK_RETRY_MAX_MS);
        this.logger.warn(
          { idempotencyKey, attempt: attemptNumber, code: error.code, status: error.status, delayMs, err: error.message },
          "Hydra request failed; retrying it within this attempt",
        );

        try {
          await sleep(delayMs, undefined, { signal: this.closing.signal });
        } catch {
          throw closedError();
        }
        return true;
      },
    });
  }

  /** Sends one request and interprets its response. */
  private async sendOnce(apiKey: string, idempotencyKey: string, events: string[]): Promise<EventResult[]> {
    if (this.closing.signal.aborted) throw closedError();

    let response: HydraResponse;
    try {
      const { statusCode, headers, body } = await this.pool.request({
        path: this.path,
        method: "POST",
        headers: {
          authorization: `Bearer ${apiKey}`,
          "content-type": "application/json",
          "idempotency-key": idempotencyKey,
          "user-agent": this.userAgent,
          accept: "application/json",
        },
        body: buildBatchBody(events, this.now()),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      response = { status: statusCode, headers, body: await readBodyText(body) };
    } catch (error) {
      throw toNetworkDeliveryError(error, this.timeoutMs);
    }

    this.logger.debug({ idempotencyKey, status: response.status, events: events.length }, "Hydra responded");
    return interpretResponse(response, events.length, this.now());
  }
}

/**
 * Builds the request body by joining the events' JSON texts, so no event is parsed or
 * serialized again.
 */
export function buildBatchBody(events: readonly string[], nowMs: number): string {
  return `{"sentAt":"${new Date(nowMs).toISOString()}","batch":[${events.join(",")}]}`;
}

/** Size of the body that buildBatchBody makes, computed without building it. */
function batchBodyBytes(events: readonly string[]): number {
  let bytes = ENVELOPE_BYTES + Math.max(0, events.length - 1);
  for (const event of events) bytes += Buffer.byteLength(event);
  return bytes;
}

/** Bytes of an empty body; every ISO time from 1970 to 9999 has the same length. */
const ENVELOPE_BYTES = Buffer.byteLength(buildBatchBody([], 0));

/** Connection errors, client timeouts and 5xx but 501: failures that a second try soon after may not repeat. */
function isQuickRetryable(error: Error): error is DeliveryError {
  if (!(error instanceof DeliveryError) || !error.retryable) return false;
  if (error.status === undefined) return error.code === "connection" || error.code === "timeout";
  return error.status >= 500 && error.status <= 599;
}

async function settle(promise: Promise<EventResult[]>): Promise<EventResult[] | DeliveryError> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof DeliveryError) return error;
    throw error;
  }
}

function resultsOf(outcome: EventResult[] | DeliveryError, count: number): EventResult[] {
  if (!(outcome instanceof DeliveryError)) return outcome;

  const result: EventResult = { status: outcome.status ?? 0, error: outcome.message, retryable: outcome.retryable, code: outcome.code };
  if (outcome.retryAtMs !== undefined) result.retryAtMs = outcome.retryAtMs;
  return Array.from({ length: count }, () => ({ ...result }));
}

function closedError(): DeliveryError {
  return new DeliveryError("The Hydra client is closed, so the batch was not delivered; send it again with an open client.", "connection", true);
}
