import { describe, expect, it } from "vitest";

import { classifyStatus } from "../src/hydra/classify.js";

describe("classifyStatus", () => {
  it.each([
    [200, "accepted", false],
    [207, "multi_status", false],
    [400, "bad_request", false],
    [401, "unauthorized", true],
    [403, "unauthorized", true],
    [404, "permanent", false],
    [408, "timeout", true],
    [409, "permanent", false],
    [413, "payload_too_large", false],
    [422, "permanent", false],
    [423, "transient", true],
    [429, "rate_limited", true],
    [500, "transient", true],
    [501, "permanent", false],
    [502, "transient", true],
    [503, "transient", true],
    [504, "transient", true],
  ] as const)("classifies %i as %s", (status, code, retryable) => {
    expect(classifyStatus(status)).toEqual({ code, retryable });
  });

  it.each([
    [202, "accepted", false],
    [418, "permanent", false],
    [599, "transient", true],
    [301, "transient", true],
    [100, "transient", true],
  ] as const)("classifies unlisted %i as %s", (status, code, retryable) => {
    expect(classifyStatus(status)).toEqual({ code, retryable });
  });
});
