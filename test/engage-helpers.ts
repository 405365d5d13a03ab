import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

import type { Config } from "../src/config/env.js";
import type { Clock } from "../src/engage/clock.js";
import { EngageKeys } from "../src/engage/keys.js";
import type { BatchRequest, EventResult, HydraClient } from "../src/hydra/types.js";
import { RedisKeys } from "../src/redis/keys.js";
import { ENTRY_FIELD_EVENT, ENTRY_FIELD_USER } from "../src/types.js";

/** A clock that moves only when the test moves it. */
export class FakeClock implements Clock {
  constructor(private ms: number) {}

  now(): number {
    return this.ms;
  }

  set(ms: number): void {
    this.ms = ms;
  }

  advance(ms: number): void {
    this.ms += ms;
  }
}

/** An identify event that Hydra received, parsed. */
export interface SentIdentify {
  type: string;
  userId?: string;
  anonymousId?: string;
  messageId: string;
  traits: Record<string, unknown>;
  context: { personas?: Record<string, unknown> };
  timestamp: string;
  receivedAt: string;
}

/**
 * An in-process HydraClient that records every request. `respond` decides the answer
 * of each request: return per-event results, or throw (a DeliveryError, say) to fail
 * the request as a whole. By default every event is accepted.
 */
export class FakeHydraClient implements HydraClient {
  readonly requests: BatchRequest[] = [];
  respond: (request: BatchRequest, requestIndex: number) => EventResult[] | Promise<EventResult[]> = (request) => request.events.map(() => ({ status: 200, retryable: false }));

  async sendBatch(request: BatchRequest): Promise<EventResult[]> {
    const index = this.requests.length;
    this.requests.push(request);
    return this.respond(request, index);
  }

  async close(): Promise<void> {}

  /** Every event of every request, parsed, in order. */
  sent(): SentIdentify[] {
    return this.requests.flatMap((request) => request.events.map((json) => JSON.parse(json) as SentIdentify));
  }

  /** Events of the requests from `fromRequest` on. */
  sentSince(fromRequest: number): SentIdentify[] {
    return this.requests.slice(fromRequest).flatMap((request) => request.events.map((json) => JSON.parse(json) as SentIdentify));
  }
}

/** Returns "<userId>=<trait value>" of each event for one trait, sorted, for exact comparisons. */
export function valuesOf(events: SentIdentify[], trait: string): string[] {
  return events.map((event) => `${event.userId ?? event.anonymousId}=${JSON.stringify(event.traits[trait])}`).sort();
}

const SPACE_ID = "spa_MzZU4A6RlqtJsuloHD6iK0";

export interface EngageEventInput {
  userId?: string;
  anonymousId?: string;
  key: string;
  value: unknown;
  email?: string;
  computationClass?: string;
  computationId?: string;
  /** ISO 8601 UTC. */
  timestamp?: string;
  messageId?: string;
}

let messageCounter = 0;

/** Builds an Engage identify as the producer stores it in the Engage stream. */
export function engageEvent(input: EngageEventInput): Record<string, unknown> {
  const timestamp = input.timestamp ?? "2025-03-11T09:05:00.066Z";
  const traits: Record<string, unknown> = { [input.key]: input.value };
  if (input.email !== undefined) traits.email = input.email;

  messageCounter += 1;
  return {
    channel: "server",
    context: {
      library: { name: "unknown", version: "unknown" },
      personas: {
        computation_class: input.computationClass ?? "audience",
        computation_id: input.computationId ?? `aud_${input.key}`,
        computation_key: input.key,
        namespace: SPACE_ID,
        space_id: SPACE_ID,
      },
    },
    integrations: { All: false, Hydra: true },
    messageId: input.messageId ?? `personas_test${messageCounter}`,
    receivedAt: timestamp,
    sentAt: null,
    timestamp,
    type: "identify",
    traits,
    ...(input.userId !== undefined ? { userId: input.userId } : {}),
    ...(input.anonymousId !== undefined ? { anonymousId: input.anonymousId } : {}),
  };
}

/** Appends events to a source's Engage stream with XADD, fields `u` and `e`, as the producer does. */
export async function appendEngage(redis: Redis, config: Config, events: Record<string, unknown>[], source = "default"): Promise<string[]> {
  const stream = new RedisKeys(config.redisPrefix).engageStream(source);
  const ids: string[] = [];
  for (const event of events) {
    const user = String(event.userId ?? event.anonymousId ?? "");
    ids.push((await redis.xadd(stream, "*", ENTRY_FIELD_USER, user, ENTRY_FIELD_EVENT, JSON.stringify(event))) as string);
  }
  return ids;
}

/** The Engage identifies of examples/events.jsonl, with their line numbers, in arrival order. */
export function exampleEngageIdentifies(): { line: number; event: Record<string, unknown> }[] {
  const lines = readFileSync(new URL("../examples/events.jsonl", import.meta.url), "utf8").split("\n");
  const found: { line: number; event: Record<string, unknown> }[] = [];
  lines.forEach((text, index) => {
    if (text.trim() === "") return;
    const event = JSON.parse(text) as Record<string, unknown>;
    const personas = (event.context as { personas?: unknown } | undefined)?.personas;
    if (event.type === "identify" && personas) found.push({ line: index + 1, event });
  });
  return found;
}

export function engageKeys(config: Config, source = "default"): EngageKeys {
  return new EngageKeys(new RedisKeys(config.redisPrefix), source);
}

/** A deterministic uniform [0, 1) generator (mulberry32), so interval draws repeat. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export const HOUR_MS = 3_600_000;
