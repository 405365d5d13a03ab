import type { IncomingMessage, ServerResponse } from "node:http";

import type { Source } from "../config/sources.js";
import type { Logger } from "../logging/logger.js";
import { hasWrites, type EventAppender, type RequestWrites } from "./append.js";
import { SourceDirectory, writeKeyFromAuthorization } from "./auth.js";
import { readBody, type BodyLimit } from "./body.js";
import { EventWriteError, RequestError } from "./errors.js";
import type { EventIngest, IndexedRejection, IngestResult } from "./ingest.js";
import type { RequestContext } from "./normalize.js";
import { errorBody, sendError, sendJson, sendSuccess } from "./respond.js";
import type { Endpoint } from "./routes.js";
import { parseIsoTimestamp } from "./timestamp.js";
import { isJsonObject, type EventType, type JsonObject, type ValidateOptions } from "./validate.js";
import { isValidWebhookSignature, SIGNATURE_HEADER } from "./webhook.js";

/** Counters of ingest outcomes, such as Prometheus counters; see ProducerMetrics in index.ts. */
export interface IngestMetrics {
  accepted(source: string, count: number): void;
  rejected(reason: string, count: number): void;
  filtered(reason: string, count: number): void;
  duplicate(count: number): void;
}

const KIB = 1024;

/**
 * Segment's documented limits, with KiB = 1024 bytes as Segment's Node library counts:
 * 32 KiB per event, 500 KiB and 2,500 events per batch request.
 */
export const MAX_EVENT_BYTES = 32 * KIB;
export const MAX_BATCH_BYTES = 500 * KIB;
export const MAX_BATCH_EVENTS = 2_500;

// Validation options are built once: a request only reads them.
const WEBHOOK_OPTIONS: ValidateOptions = { ignoreSentAt: true };
const BATCH_OPTIONS: ValidateOptions = {};
const SINGLE_OPTIONS = new Map<EventType, ValidateOptions>(
  (["identify", "track", "page", "screen", "group", "alias"] as const).map((type) => [type, { endpointType: type }]),
);

const EVENT_BODY_LIMIT: BodyLimit = { maxBytes: MAX_EVENT_BYTES, label: "32 KiB, the limit of one event" };
const BATCH_BODY_LIMIT: BodyLimit = { maxBytes: MAX_BATCH_BYTES, label: "500 KiB, the limit of a batch request" };

export interface HandlerOptions {
  directory: SourceDirectory;
  ingest: EventIngest;
  appender: EventAppender;
  webhookSecret?: string;
  logger: Logger;
  metrics?: IngestMetrics;
}

function unauthorized(message: string): RequestError {
  return new RequestError(401, "unauthorized", message);
}

function parseJson(body: Buffer): unknown {
  let text = body.toString("utf8");
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RequestError(400, "invalid_json", `The request body is not valid JSON (${(error as Error).message}).`);
  }
}

function invalidBody(field: string | undefined, message: string): RequestError {
  return new RequestError(400, "invalid_body", message, field);
}

/** Reads a batch-level `context` or `integrations`: an object, or absent (undefined or null). */
function readBatchObject(body: JsonObject, field: "context" | "integrations"): JsonObject | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) throw invalidBody(field, `"${field}" of a batch must be a JSON object`);
  return value;
}

/**
 * Handles one Tracking API or webhook request: authenticates it, reads and parses the
 * body, ingests its events, stores them and responds. Every path ends the response.
 */
export class TrackingHandler {
  constructor(private readonly options: HandlerOptions) {}

  async handle(req: IncomingMessage, res: ServerResponse, endpoint: Endpoint, requestId: number, closeConnection: () => boolean): Promise<void> {
    let sourceName: string | undefined;
    try {
      const source = this.authenticateEarly(req, endpoint);
      sourceName = source?.name;

      const limit = endpoint.kind === "single" ? EVENT_BODY_LIMIT : BATCH_BODY_LIMIT;
      const body = await readBody(req, limit);

      if (endpoint.kind === "webhook") this.verifySignature(req, body.raw);

      const parsed = parseJson(body.decoded);
      const owner = source ?? this.sourceFromBody(parsed, endpoint);
      sourceName = owner.name;

      const outcome = this.ingest(parsed, owner, endpoint);

      if (outcome.singleRejection !== undefined) {
        await this.storeRejections(outcome.result.writes, owner, requestId);
        this.countRejections(outcome.result.rejected);
        const rejection = outcome.singleRejection;
        const tooLarge = rejection.reason === "event_too_large";
        sendJson(
          res,
          tooLarge ? 413 : 400,
          errorBody(tooLarge ? "event_too_large" : "invalid_event", rejection.message, rejection.field),
          closeConnection(),
        );
        return;
      }

      const { result } = outcome;
      let duplicates = 0;
      if (hasWrites(result.writes)) {
        duplicates = (await this.options.appender.write(result.writes, owner.name)).duplicates;
      }

      this.countResult(owner, result, duplicates);
      sendSuccess(res, result.rejected, closeConnection());
    } catch (error) {
      this.fail(res, error, requestId, sourceName, closeConnection());
    }
  }

  /**
   * Finds the source from the Basic Authorization header before the body is read, so an
   * unknown write key costs no body reading. Returns undefined when the header is absent.
   */
  private authenticateEarly(req: IncomingMessage, endpoint: Endpoint): Source | undefined {
    if (endpoint.kind === "webhook" && this.options.webhookSecret === undefined) {
      throw new RequestError(501, "webhook_not_configured", "Webhook deliveries are turned off; set WEBHOOK_SECRET to the shared secret of the Segment Webhooks destination.");
    }

    const lookup = writeKeyFromAuthorization(req.headers.authorization);
    if (lookup.kind === "missing") return undefined;
    if (lookup.kind === "malformed") {
      throw unauthorized("The Authorization header must be HTTP Basic with the write key as the user name and an empty password.");
    }

    const source = this.options.directory.find(lookup.writeKey);
    if (source === undefined) throw unauthorized("The write key is not valid; use the write key of a configured source.");
    return source;
  }

  private verifySignature(req: IncomingMessage, raw: Buffer): void {
    const signature = req.headers[SIGNATURE_HEADER];
    if (signature === undefined || signature === "") {
      throw new RequestError(401, "invalid_signature", "The X-Signature header is missing; Segment's Webhooks destination signs each delivery with the shared secret.");
    }
    if (!isValidWebhookSignature(raw, signature, this.options.webhookSecret as string)) {
      throw new RequestError(401, "invalid_signature", "The X-Signature header does not match the body; check that WEBHOOK_SECRET equals the destination's shared secret.");
    }
  }

  /** Finds the source of a request without an Authorization header. */
  private sourceFromBody(parsed: unknown, endpoint: Endpoint): Source {
    // Webhook deliveries carry no write key; they belong to the first configured source.
    if (endpoint.kind === "webhook") return this.options.directory.first;

    const writeKey = isJsonObject(parsed) ? parsed.writeKey : undefined;
    if (typeof writeKey !== "string" || writeKey === "") {
      throw unauthorized('The write key is missing; send it as the HTTP Basic user name with an empty password, or as "writeKey" in the body.');
    }

    const source = this.options.directory.find(writeKey);
    if (source === undefined) throw unauthorized("The write key is not valid; use the write key of a configured source.");
    return source;
  }

  private ingest(parsed: unknown, source: Source, endpoint: Endpoint): { result: IngestResult; singleRejection?: IndexedRejection } {
    const receivedAtMs = Date.now();
    const request: RequestContext = { receivedAtMs, receivedAt: new Date(receivedAtMs).toISOString() };

    if (endpoint.kind === "single") {
      if (!isJsonObject(parsed)) throw invalidBody(undefined, `The body of /v1/${endpoint.type} must be a JSON object: one ${endpoint.type} event.`);
      return this.ingestOne(parsed, source, request, SINGLE_OPTIONS.get(endpoint.type) as ValidateOptions);
    }

    if (endpoint.kind === "webhook") {
      // Webhook deliveries come from Segment, which already corrected their timestamp for
      // clock skew; applying sentAt again would shift it by Segment's delivery delay.
      if (Array.isArray(parsed)) return { result: this.ingestMany(parsed, source, request, WEBHOOK_OPTIONS) };
      if (isJsonObject(parsed)) return this.ingestOne(parsed, source, request, WEBHOOK_OPTIONS);
      throw invalidBody(undefined, "The body of /v1/webhook must be one event (a JSON object) or a JSON array of events.");
    }

    if (!isJsonObject(parsed)) throw invalidBody(undefined, 'The body of a batch request must be a JSON object with a "batch" array.');
    const batch = parsed.batch;
    if (!Array.isArray(batch)) throw invalidBody("batch", 'The body of a batch request needs "batch": a JSON array of events.');

    request.batchContext = readBatchObject(parsed, "context");
    request.batchIntegrations = readBatchObject(parsed, "integrations");

    const sentAt = parsed.sentAt;
    if (sentAt !== undefined && sentAt !== null) {
      const sentAtMs = typeof sentAt === "string" ? parseIsoTimestamp(sentAt) : undefined;
      if (sentAtMs === undefined) throw invalidBody("sentAt", '"sentAt" of a batch must be an ISO 8601 date-time string, such as "2025-03-11T09:05:00.000Z".');
      request.batchSentAtMs = sentAtMs;
    }

    return { result: this.ingestMany(batch, source, request, BATCH_OPTIONS) };
  }

  private ingestOne(event: JsonObject, source: Source, request: RequestContext, options: ValidateOptions): { result: IngestResult; singleRejection?: IndexedRejection } {
    const result = this.options.ingest.ingest([event], source, request, options);
    return { result, singleRejection: result.rejected[0] };
  }

  private ingestMany(events: unknown[], source: Source, request: RequestContext, options: ValidateOptions): IngestResult {
    if (events.length > MAX_BATCH_EVENTS) {
      throw new RequestError(400, "too_many_events", `The batch has ${events.length} events, more than ${MAX_BATCH_EVENTS}, the limit of a batch request; split it.`, "batch");
    }
    return this.options.ingest.ingest(events, source, request, options);
  }

  /**
   * Stores the counters and the rejected stream entry of a single-event request that was
   * rejected. The client gets its 400 even when Redis fails, because a retry would be
   * rejected again.
   */
  private async storeRejections(writes: RequestWrites, source: Source, requestId: number): Promise<void> {
    try {
      await this.options.appender.write(writes, source.name);
    } catch (error) {
      this.options.logger.error({ err: error, requestId, source: source.name }, "failed to store a rejected event in the rejected stream");
    }
  }

  private countRejections(rejected: readonly IndexedRejection[]): void {
    const metrics = this.options.metrics;
    if (metrics === undefined) return;
    for (const rejection of rejected) metrics.rejected(rejection.reason, 1);
  }

  private countResult(source: Source, result: IngestResult, duplicates: number): void {
    const metrics = this.options.metrics;
    if (metrics === undefined) return;

    if (result.stored > 0) metrics.accepted(source.name, result.stored);
    if (duplicates > 0) metrics.duplicate(duplicates);
    for (const [reason, count] of result.filtered) metrics.filtered(reason, count);
    this.countRejections(result.rejected);
  }

  private fail(res: ServerResponse, error: unknown, requestId: number, source: string | undefined, closeConnection: boolean): void {
    const logger = this.options.logger;

    if (error instanceof RequestError) {
      logger.debug({ requestId, source, status: error.status, code: error.code, field: error.field }, "request rejected");
      this.options.metrics?.rejected(error.code, 1);
      // After a 413 the rest of the body may still be arriving; closing the connection
      // spares reading it.
      sendError(res, error, closeConnection || error.status === 413);
      return;
    }

    if (error instanceof EventWriteError) {
      logger.error({ err: error, requestId, source }, "failed to store events in Redis; responded 503 so the client retries");
      sendError(res, new RequestError(503, "redis_unavailable", "The events could not be stored; retry the request later."), closeConnection);
      return;
    }

    logger.error({ err: error, requestId, source }, "request failed with an unexpected error");
    sendError(res, new RequestError(500, "internal_error", "The request failed with an internal error; retry it later."), closeConnection);
  }
}
