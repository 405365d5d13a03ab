import type { IncomingMessage, ServerResponse } from "node:http";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";

import { MAX_BODY_BYTES } from "../hydra/limits.js";
import { describeFault, hashApiKey, type Fault } from "./faults.js";
import { bearerKey, headerValue, readBody, sendJson, sendText, type ReadBody } from "./http.js";
import type { AcceptedEvent, RecordedBatch, SimulatorState } from "./state.js";
import { checkEnvelope, checkEvent } from "./validate.js";

const gunzipAsync = promisify(gunzip);

/** Room for gzip's own overhead on a body that does not compress. */
const GZIP_OVERHEAD_BYTES = 16_384;

/** Simulator services that the batch endpoint uses. */
export interface BatchEndpointContext {
  state: SimulatorState;
  /** API keys accepted; any non-empty key when undefined. */
  apiKeys?: ReadonlySet<string>;
  now(): number;
  nextBatchId(): number;
  takeFault(apiKey: string): Fault | undefined;
  /** Waits, unless the simulator closes first; resolves false then. */
  delay(ms: number): Promise<boolean>;
  /** Stores a finished request and emits the "batch" event. */
  record(batch: RecordedBatch): void;
}

interface EventOutcome {
  status: number;
  error?: string;
}

/**
 * Handles POST /v1/batch: checks the API key, applies the next fault, decodes and
 * checks the body and each event, and accepts the valid events. Responds 200 when every
 * event was accepted, else 207 with one result per event.
 */
export async function handleBatchRequest(context: BatchEndpointContext, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const batch: RecordedBatch = {
    id: context.nextBatchId(),
    receivedAt: new Date(context.now()).toISOString(),
    idempotencyKey: headerValue(request, "idempotency-key"),
    userAgent: headerValue(request, "user-agent"),
    contentType: headerValue(request, "content-type"),
    contentEncoding: headerValue(request, "content-encoding"),
    bytes: 0,
    eventCount: 0,
    status: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
  };

  const apiKey = bearerKey(request);
  if (apiKey !== undefined) batch.apiKeyHash = hashApiKey(apiKey);

  const raw = await readBody(request, MAX_BODY_BYTES + GZIP_OVERHEAD_BYTES);
  const parsed = await parseBatchBody(raw, batch.contentEncoding);
  batch.bytes = parsed.bytes;
  if (parsed.ok) {
    batch.sentAt = parsed.sentAt;
    batch.eventCount = parsed.events.length;
    batch.messageIds = parsed.events.map((event) => String((event as { messageId?: unknown } | null)?.messageId ?? ""));
  }

  const finish = (status: number, body: unknown, headers?: Record<string, string>) => {
    batch.status = status;
    context.record(batch);
    if (typeof body === "string") sendText(response, status, body, headers);
    else sendJson(response, status, body, headers);
  };

  if (apiKey === undefined) {
    return finish(401, { error: "The Authorization header is missing; send Authorization: Bearer <API key>." });
  }
  if (context.apiKeys !== undefined && !context.apiKeys.has(apiKey)) {
    return finish(403, { error: "The API key is not valid for this Hydra account." });
  }

  const fault = context.takeFault(apiKey);
  if (fault !== undefined) {
    batch.fault = describeFault(fault);

    if (fault.latencyMs !== undefined && !(await context.delay(fault.latencyMs))) return;
    if (fault.noAnswer) {
      // The response stays open until the client gives up or the simulator closes.
      context.record(batch);
      return;
    }
    if (fault.resetConnection) {
      request.socket.destroy();
      context.record(batch);
      return;
    }
    if (fault.status !== undefined && fault.status !== 207 && (fault.status < 200 || fault.status > 299)) {
      return finish(fault.status, fault.body ?? { error: `Simulated ${fault.status} response.` }, retryAfterHeader(fault));
    }
  }

  if (!parsed.ok) return finish(parsed.status, { error: parsed.error });

  const outcomes = parsed.events.map((event, index) =>
    processEvent(context, batch, event, fault?.reject?.find((rejection) => rejection.index === index)),
  );
  batch.rejected = outcomes.filter((outcome) => outcome.status !== 200).length;

  if (fault?.status === 207 || batch.rejected > 0) {
    return finish(207, fault?.body ?? { results: outcomes }, retryAfterHeader(fault));
  }
  return finish(200, { accepted: parsed.events.length });
}

type ParsedBody = { ok: true; bytes: number; sentAt: string; events: unknown[] } | { ok: false; bytes: number; status: number; error: string };

/** Decodes (gzip or none), parses and checks the envelope of a batch body, without responding. */
async function parseBatchBody(raw: ReadBody, contentEncoding: string | undefined): Promise<ParsedBody> {
  const encoding = (contentEncoding ?? "identity").trim().toLowerCase();
  const gzipped = encoding === "gzip" || encoding === "x-gzip";
  const fail = (status: number, error: string, bytes = raw.size): ParsedBody => ({ ok: false, bytes, status, error });

  if (encoding !== "identity" && !gzipped) return fail(415, `Content-Encoding ${encoding} is not supported; send gzip or no encoding.`);
  if (raw.overLimit || (!gzipped && raw.size > MAX_BODY_BYTES)) return fail(413, `The request body is over ${MAX_BODY_BYTES} bytes; split the batch.`);

  let text: string;
  try {
    text = gzipped ? (await gunzipAsync(raw.body, { maxOutputLength: MAX_BODY_BYTES })).toString("utf8") : raw.body.toString("utf8");
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      return fail(413, `The decoded request body is over ${MAX_BODY_BYTES} bytes; split the batch.`);
    }
    return fail(400, `The gzip body could not be decoded: ${(error as Error).message}`);
  }
  const bytes = Buffer.byteLength(text);

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail(400, `The body is not valid JSON: ${(error as Error).message}`, bytes);
  }

  const envelope = checkEnvelope(json);
  if (!envelope.ok) return fail(400, envelope.error, bytes);
  return { ok: true, bytes, sentAt: envelope.sentAt, events: envelope.events };
}

function processEvent(
  context: BatchEndpointContext,
  batch: RecordedBatch,
  event: unknown,
  rejection: { status: number; error?: string } | undefined,
): EventOutcome {
  if (rejection !== undefined && rejection.status !== 200) {
    return { status: rejection.status, error: rejection.error ?? `Simulated ${rejection.status} for this event.` };
  }

  const error = checkEvent(event);
  if (error !== undefined) return { status: 400, error };

  const verdict = context.state.acceptEvent(event as AcceptedEvent, batch.id);
  if (verdict === "duplicate") batch.duplicates += 1;
  else batch.accepted += 1;
  return { status: 200 };
}

function retryAfterHeader(fault: Fault | undefined): Record<string, string> | undefined {
  return fault?.retryAfter === undefined ? undefined : { "retry-after": fault.retryAfter };
}
