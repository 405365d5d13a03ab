import { describe, expect, it } from "vitest";

import { BODY_OVERHEAD_BYTES, entryTimeMs, LaneBuffer, type LaneEntry } from "../src/batching/lane-buffer.js";

function entry(sequence: number, bytes: number): LaneEntry {
  return { id: `1700000000${String(sequence).padStart(3, "0")}-0`, user: `user-${sequence}`, event: "x".repeat(bytes), bytes };
}

describe("LaneBuffer", () => {
  it("cuts batches at the event limit", () => {
    const buffer = new LaneBuffer(3, 524_288);
    for (let i = 0; i < 7; i++) buffer.push(entry(i, 10));

    expect(buffer.isFull()).toBe(true);
    expect(buffer.takeBatch()?.entries.map((e) => e.user)).toEqual(["user-0", "user-1", "user-2"]);
    expect(buffer.takeBatch()?.entries.map((e) => e.user)).toEqual(["user-3", "user-4", "user-5"]);
    expect(buffer.takeBatch()?.entries.map((e) => e.user)).toEqual(["user-6"]);
    expect(buffer.takeBatch()).toBeUndefined();
  });

  it("cuts batches at the byte limit", () => {
    const buffer = new LaneBuffer(500, BODY_OVERHEAD_BYTES + 250);
    for (let i = 0; i < 5; i++) buffer.push(entry(i, 100));

    const first = buffer.takeBatch();
    expect(first?.entries).toHaveLength(2);
    expect(first?.bytes).toBe(BODY_OVERHEAD_BYTES + 100 + 101);
    expect(buffer.size).toBe(3);
  });

  it("sends an oversize event alone", () => {
    const buffer = new LaneBuffer(500, 1_024);
    buffer.push(entry(0, 5_000));
    buffer.push(entry(1, 10));

    expect(buffer.takeBatch()?.entries.map((e) => e.user)).toEqual(["user-0"]);
    expect(buffer.takeBatch()?.entries.map((e) => e.user)).toEqual(["user-1"]);
  });

  it("reports the oldest entry time", () => {
    const buffer = new LaneBuffer(500, 524_288);
    expect(buffer.oldestEntryTimeMs).toBeUndefined();
    buffer.push({ id: "1733340000123-4", user: "u", event: "{}", bytes: 2 });
    expect(buffer.oldestEntryTimeMs).toBe(1_733_340_000_123);
    expect(entryTimeMs("1733340000999-0")).toBe(1_733_340_000_999);
  });
});
