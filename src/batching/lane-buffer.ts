/** A stream entry read from a lane, kept until it is part of a job. */
export interface LaneEntry {
  id: string;
  user: string;
  event: string;
  bytes: number;
}

/** A batch cut from a lane buffer, ready to become a delivery job. */
export interface Batch {
  entries: LaneEntry[];
  bytes: number;
}

/**
 * Bytes of the request body around the events: `{"sentAt":"<24 characters>","batch":[`
 * and `]}`, rounded up. Each event after the first adds one byte for its comma.
 */
export const BODY_OVERHEAD_BYTES = 64;

/** Returns the stream entry id's time part: the epoch milliseconds at which Redis stored it. */
export function entryTimeMs(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf("-")));
}

/**
 * Entries read from one lane and not yet in a job, in stream order. Cuts batches that
 * respect the event and byte limits of one Hydra request.
 */
export class LaneBuffer {
  private entries: LaneEntry[] = [];
  private totalBytes = 0;

  constructor(
    private readonly maxEvents: number,
    private readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.entries.length;
  }

  /** Epoch milliseconds of the oldest buffered entry, or undefined when empty. */
  get oldestEntryTimeMs(): number | undefined {
    return this.entries.length > 0 ? entryTimeMs(this.entries[0].id) : undefined;
  }

  push(entry: LaneEntry): void {
    this.entries.push(entry);
    this.totalBytes += entry.bytes + 1;
  }

  /** True when the buffered entries fill at least one whole batch. */
  isFull(): boolean {
    return this.entries.length >= this.maxEvents || this.totalBytes + BODY_OVERHEAD_BYTES >= this.maxBytes;
  }

  /**
   * Removes and returns the next batch: as many entries from the front as fit in
   * maxEvents and maxBytes. An entry larger than maxBytes on its own still forms a
   * batch of one, so it reaches Hydra (which returns 413) and is dead-lettered with a
   * clear error instead of blocking the lane.
   */
  takeBatch(): Batch | undefined {
    if (this.entries.length === 0) return undefined;

    let count = 0;
    let bytes = BODY_OVERHEAD_BYTES;
    while (count < this.entries.length && count < this.maxEvents) {
      const next = this.entries[count].bytes + (count > 0 ? 1 : 0);
      if (count > 0 && bytes + next > this.maxBytes) break;
      bytes += next;
      count++;
    }

    const taken = this.entries.splice(0, count);
    this.totalBytes -= taken.reduce((sum, entry) => sum + entry.bytes + 1, 0);
    return { entries: taken, bytes };
  }

  /** Removes every entry, for a lane given up; the entries stay pending in the stream. */
  clear(): void {
    this.entries = [];
    this.totalBytes = 0;
  }
}
