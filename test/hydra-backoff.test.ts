import { describe, expect, it } from "vitest";

import { backoffDelayMs } from "../src/hydra/backoff.js";

const almostOne = () => 0.999_999;

describe("backoffDelayMs", () => {
  describe("with random fixed at its top", () => {
    it.each([
      [1, 999],
      [2, 1_999],
      [3, 3_999],
      [10, 511_999],
    ])("stays under the ceiling on attempt %i", (attempt, expected) => {
      expect(backoffDelayMs(attempt, 1_000, 900_000, almostOne)).toBe(expected);
    });

    it("caps the ceiling at maxMs", () => {
      expect(backoffDelayMs(11, 1_000, 900_000, almostOne)).toBe(899_999);
      expect(backoffDelayMs(60, 1_000, 900_000, almostOne)).toBe(899_999);
    });

    it("survives a huge attempt number", () => {
      expect(backoffDelayMs(5_000, 1_000, 900_000, almostOne)).toBe(899_999);
    });
  });

  describe("with other fixed randoms", () => {
    it("returns zero when random is zero", () => {
      expect(backoffDelayMs(7, 1_000, 900_000, () => 0)).toBe(0);
    });

    it("scales linearly with random", () => {
      expect(backoffDelayMs(3, 1_000, 900_000, () => 0.5)).toBe(2_000);
      expect(backoffDelayMs(3, 1_000, 900_000, () => 0.25)).toBe(1_000);
    });

    it("treats attempts below 1 as 1", () => {
      expect(backoffDelayMs(0, 1_000, 900_000, () => 0.5)).toBe(500);
      expect(backoffDelayMs(-3, 1_000, 900_000, () => 0.5)).toBe(500);
    });
  });

  describe("with Math.random", () => {
    it("stays within zero and the ceiling", () => {
      for (let attempt = 1; attempt <= 20; attempt++) {
        const ceiling = Math.min(60_000, 100 * 2 ** (attempt - 1));
        const delay = backoffDelayMs(attempt, 100, 60_000);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(ceiling);
        expect(Number.isInteger(delay)).toBe(true);
      }
    });
  });
});
