import { createHash } from "node:crypto";

import { z } from "zod";

const rejectionSchema = z.strictObject({
  index: z.number().int().min(0),
  status: z.number().int().min(100).max(599),
  error: z.string().optional(),
});

/**
 * A fault that the simulator applies to the next `count` POST /v1/batch requests (of
 * one API key when `apiKey` is set). Set at least one of `status`, `latencyMs`,
 * `noAnswer` or `resetConnection`.
 */
export const faultSchema = z
  .strictObject({
    /** Requests the fault applies to. @defaultValue 1 */
    count: z.number().int().min(1).default(1),
    /** Limits the fault to requests with this API key. */
    apiKey: z.string().min(1).optional(),
    /** Status to respond with instead of processing the batch; 207 processes it with `reject` applied. */
    status: z.number().int().min(100).max(599).optional(),
    /** Retry-After header of the response, seconds or an HTTP date. */
    retryAfter: z.string().optional(),
    /** Wait before responding, in milliseconds. */
    latencyMs: z.number().int().min(0).max(600_000).optional(),
    /** Accept the connection and never respond. */
    noAnswer: z.boolean().optional(),
    /** Destroy the socket without a response. */
    resetConnection: z.boolean().optional(),
    /** Per-event statuses of a 207, by position in the batch; the other events are processed as usual. */
    reject: z.array(rejectionSchema).optional(),
    /** Response body text in place of the default, for example a malformed 207. */
    body: z.string().optional(),
  })
  .refine((fault) => fault.status !== undefined || fault.latencyMs !== undefined || fault.noAnswer || fault.resetConnection, {
    message: "set status, latencyMs, noAnswer or resetConnection",
  })
  .refine((fault) => fault.reject === undefined || fault.status === 207, { message: "reject needs status 207", path: ["reject"] });

/** A fault as callers write it (count may be left out). */
export type FaultInput = z.input<typeof faultSchema>;
export type Fault = z.output<typeof faultSchema>;

/** Faults in the order they were added, each with the requests it still applies to. */
export class FaultQueue {
  private entries: { fault: Fault; remaining: number }[] = [];

  /** @throws z.ZodError when the fault is invalid */
  add(input: FaultInput): void {
    const fault = faultSchema.parse(input);
    this.entries.push({ fault, remaining: fault.count });
  }

  /** Takes one use of the first fault that applies to a request with this API key. */
  take(apiKey: string | undefined): Fault | undefined {
    const index = this.entries.findIndex((entry) => entry.fault.apiKey === undefined || entry.fault.apiKey === apiKey);
    if (index === -1) return undefined;

    const entry = this.entries[index];
    entry.remaining -= 1;
    if (entry.remaining === 0) this.entries.splice(index, 1);
    return entry.fault;
  }

  clear(): number {
    const cleared = this.entries.length;
    this.entries = [];
    return cleared;
  }

  /** Queued faults with the API key shown as a short hash. */
  list(): (Omit<Fault, "apiKey"> & { apiKeyHash?: string; remaining: number })[] {
    return this.entries.map(({ fault, remaining }) => {
      const { apiKey, ...rest } = fault;
      return apiKey === undefined ? { ...rest, remaining } : { ...rest, apiKeyHash: hashApiKey(apiKey), remaining };
    });
  }
}

/** Short SHA-256 of an API key, enough to tell keys apart in records without showing them. */
export function hashApiKey(apiKey: string): string {
  return createHash("sha256").update(apiKey).digest("hex").slice(0, 12);
}

/** Describes a fault in one line, for a recorded batch. */
export function describeFault(fault: Fault): string {
  const parts: string[] = [];
  if (fault.latencyMs !== undefined) parts.push(`latency ${fault.latencyMs} ms`);
  if (fault.noAnswer) parts.push("no answer");
  if (fault.resetConnection) parts.push("connection reset");
  if (fault.status !== undefined) parts.push(`status ${fault.status}`);
  return parts.join(", ");
}
