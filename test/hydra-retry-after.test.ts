import { describe, expect, it } from "vitest";

import { parseRetryAfter } from "../src/hydra/retry-after.js";

const NOW = Date.parse("2025-03-11T10:00:00.000Z");

describe("parseRetryAfter", () => {
  describe("with delay-seconds", () => {
    it.each([
      ["0", NOW],
      ["1", NOW + 1_000],
      ["120", NOW + 120_000],
      [" 30 ", NOW + 30_000],
      ["1.5", NOW + 1_500],
    ])("reads %j", (header, expected) => {
      expect(parseRetryAfter(header, NOW)).toBe(expected);
    });

    it("keeps an hour uncapped", () => {
      expect(parseRetryAfter("3600", NOW)).toBe(NOW + 3_600_000);
    });

    it("keeps a day uncapped", () => {
      expect(parseRetryAfter("86400", NOW)).toBe(NOW + 86_400_000);
    });
  });

  describe("with an HTTP date", () => {
    it("reads a date an hour ahead", () => {
      const header = new Date(NOW + 3_600_000).toUTCString();
      expect(parseRetryAfter(header, NOW)).toBe(NOW + 3_600_000);
    });

    it("reads a date a week ahead", () => {
      const header = new Date(NOW + 7 * 86_400_000).toUTCString();
      expect(parseRetryAfter(header, NOW)).toBe(NOW + 7 * 86_400_000);
    });

    it("reads the RFC 850 form", () => {
      expect(parseRetryAfter("Tuesday, 11-Mar-25 10:05:00 GMT", NOW)).toBe(NOW + 300_000);
    });

    it("reads asctime as GMT", () => {
      expect(parseRetryAfter("Tue Mar 11 10:05:00 2025", NOW)).toBe(NOW + 300_000);
    });

    it("clamps a past date to now", () => {
      expect(parseRetryAfter("Tue, 11 Mar 2025 09:00:00 GMT", NOW)).toBe(NOW);
    });
  });

  describe("with unusable input", () => {
    it.each([[undefined], [""], ["   "], ["soon"], ["-5"], ["1e3"], ["2025-03-11T10:05:00Z"], ["Tue, 99 Foo 2025 99:99:99 GMT"], ["0x10"]])(
      "returns undefined for %j",
      (header) => {
        expect(parseRetryAfter(header, NOW)).toBeUndefined();
      },
    );
  });
});
