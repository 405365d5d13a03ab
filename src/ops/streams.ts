import type { Redis } from "ioredis";

import type { Config } from "../config/env.js";
import { RedisKeys } from "../redis/keys.js";

/** One consumer group of a stream, as XINFO GROUPS reports it. */
export interface StreamGroupState {
  name: string;
  consumers: number;
  /** Entries delivered to a consumer and not yet acknowledged (XACK). */
  pending: number;
  /** Entries not yet delivered to the group; null when Redis cannot tell, for example after XDEL. */
  lag: number | null;
  lastDeliveredId: string;
}

/** A lane stream or an Engage stream with its length and consumer groups. */
export interface StreamState {
  kind: "lane" | "engage";
  source: string;
  /** `<source>.p<n>` for a lane stream, `engage.<source>` for an Engage stream. */
  name: string;
  key: string;
  length: number;
  groups: StreamGroupState[];
}

/** Converts a flat XINFO reply ([field, value, field, value, ...]) into an object. */
function fieldsOf(reply: unknown[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = reply[i + 1];
  return fields;
}

function parseGroup(reply: unknown[]): StreamGroupState {
  const fields = fieldsOf(reply);
  return {
    name: String(fields.name),
    consumers: Number(fields.consumers ?? 0),
    pending: Number(fields.pending ?? 0),
    lag: fields.lag === null || fields.lag === undefined ? null : Number(fields.lag),
    lastDeliveredId: String(fields["last-delivered-id"] ?? "0-0"),
  };
}

/** Lists every lane stream and Engage stream the configuration implies, without reading Redis. */
export function serviceStreams(config: Config): Omit<StreamState, "length" | "groups">[] {
  const keys = new RedisKeys(config.redisPrefix);
  const streams: Omit<StreamState, "length" | "groups">[] = [];

  for (const source of config.sources) {
    for (let partition = 0; partition < config.partitions; partition++) {
      const lane = keys.laneId(source.name, partition);
      streams.push({ kind: "lane", source: source.name, name: lane, key: keys.laneStream(lane) });
    }
  }
  for (const source of config.sources) {
    streams.push({ kind: "engage", source: source.name, name: `engage.${source.name}`, key: keys.engageStream(source.name) });
  }

  return streams;
}

/**
 * Reads length and consumer groups (XLEN, XINFO GROUPS) of every lane and Engage stream
 * in one pipeline. A stream that does not exist yet has length 0 and no groups.
 *
 * NOTE: the pipeline contains two commands per stream, so 1024 partitions of 10 sources
 * make about 20,000 commands a call. That suits a status screen and a scrape, not a loop.
 */
export async function readStreams(redis: Redis, config: Config): Promise<StreamState[]> {
  const streams = serviceStreams(config);
  const pipeline = redis.pipeline();
  for (const stream of streams) {
    pipeline.xlen(stream.key);
    pipeline.xinfo("GROUPS", stream.key);
  }

  const replies = (await pipeline.exec()) ?? [];
  return streams.map((stream, index) => {
    const [lengthError, length] = replies[index * 2] ?? [];
    const [groupsError, groups] = replies[index * 2 + 1] ?? [];
    if (lengthError) throw lengthError;

    // XINFO GROUPS fails with "no such key" for a stream that no producer wrote to yet.
    const groupList = groupsError ? [] : (groups as unknown[][]).map(parseGroup);
    return { ...stream, length: Number(length ?? 0), groups: groupList };
  });
}
