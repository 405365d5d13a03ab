import * as crypto from "node:crypto";

import type { Source } from "../config/sources.js";

// crypto.hash (Node 20.12 and later) hashes in one call, several times faster than
// createHash for short input; the package allows Node 20.11, which lacks it.
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: "buffer") => Buffer }).hash;

function sha256(text: string): Buffer {
  if (oneShotHash !== undefined) return oneShotHash("sha256", text, "buffer");
  return crypto.createHash("sha256").update(text, "utf8").digest();
}

/** Write key found in a request, and where it came from. */
export type WriteKeyLookup =
  | { kind: "found"; writeKey: string }
  | { kind: "missing" }
  /** An Authorization header that is not HTTP Basic, or whose credentials are not base64. */
  | { kind: "malformed" };

/**
 * Reads the write key from an HTTP Basic Authorization header: the user name, with an
 * empty password. A header without the colon ("Basic base64(writeKey)") is accepted too.
 */
export function writeKeyFromAuthorization(header: string | undefined): WriteKeyLookup {
  if (header === undefined || header === "") return { kind: "missing" };

  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space).toLowerCase() !== "basic") return { kind: "malformed" };

  const credentials = Buffer.from(header.slice(space + 1).trim(), "base64").toString("utf8");
  const colon = credentials.indexOf(":");
  const writeKey = colon < 0 ? credentials : credentials.slice(0, colon);
  if (writeKey === "") return { kind: "malformed" };
  return { kind: "found", writeKey };
}

/**
 * Finds the source of a write key in constant time: both sides are hashed with SHA-256
 * so the compared buffers have equal length, every source is compared, and the loop does
 * not stop at a match.
 */
export class SourceDirectory {
  private readonly entries: { source: Source; hash: Buffer }[];

  constructor(sources: readonly Source[]) {
    this.entries = sources.map((source) => ({ source, hash: sha256(source.writeKey) }));
  }

  /** Returns the source whose write key equals `writeKey`, or undefined. */
  find(writeKey: string): Source | undefined {
    const hash = sha256(writeKey);
    let found: Source | undefined;
    for (const entry of this.entries) {
      if (crypto.timingSafeEqual(entry.hash, hash) && found === undefined) found = entry.source;
    }
    return found;
  }

  /** The first configured source, which owns webhook deliveries sent without a write key. */
  get first(): Source {
    return this.entries[0].source;
  }
}
