/**
 * Benchmark events, taken from examples/events.jsonl so that their size and shape are
 * those of the sample traffic: browser, server and mobile tracks and identifies with
 * their full `context`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { filterReasonOf, isEngageIdentify } from "../../src/producer/routing.js";
import { REPOSITORY } from "./harness.js";

export type SampleEvent = Record<string, unknown>;

/** Placeholder that autocannon replaces with one new id per request (option idReplacement). */
export const AUTOCANNON_ID = "[<id>]";

let cached: SampleEvent[] | undefined;

/**
 * Returns the sample events that the producer stores in a lane stream: track and
 * identify calls that no `integrations` setting filters out and that are not Engage
 * identifies (those go to the Engage stream): 109 of the file's 159 events.
 */
export function laneSampleEvents(): SampleEvent[] {
  if (cached) return cached;

  const lines = readFileSync(join(REPOSITORY, "examples", "events.jsonl"), "utf8").split("\n").filter((line) => line.trim() !== "");
  cached = lines
    .map((line) => JSON.parse(line) as SampleEvent)
    .filter((event) => {
      const type = event.type;
      if (type !== "track" && type !== "identify") return false;
      if (filterReasonOf(type, event.integrations, undefined) !== undefined) return false;
      return !isEngageIdentify(event);
    });
  return cached;
}

/**
 * Returns the lane-bound track event whose JSON length is nearest the median of the
 * lane-bound events: an analytics.js track with page and user agent context.
 */
export function typicalTrackEvent(): SampleEvent {
  const events = laneSampleEvents();
  const lengths = events.map((event) => JSON.stringify(event).length).sort((a, b) => a - b);
  const medianLength = lengths[Math.floor(lengths.length / 2)];

  let best = events.find((event) => event.type === "track") as SampleEvent;
  for (const event of events) {
    if (event.type !== "track") continue;
    if (Math.abs(JSON.stringify(event).length - medianLength) < Math.abs(JSON.stringify(best).length - medianLength)) best = event;
  }
  return best;
}

/** Returns a copy of a sample event with a new messageId and userId; the anonymousId is dropped. */
export function withIds(event: SampleEvent, messageId: string, userId: string): SampleEvent {
  return { ...event, messageId, userId, anonymousId: undefined };
}

/** Mean JSON length in bytes of the sample events, as sent. */
export function meanEventBytes(events: SampleEvent[]): number {
  return events.reduce((sum, event) => sum + Buffer.byteLength(JSON.stringify(event)), 0) / events.length;
}
