import { loadConfig, type Config } from "../../src/config/env.js";
import { REDIS_URL, uniquePrefix } from "./redis.js";

/**
 * Builds a Config for a test from environment-style overrides, with a unique Redis
 * prefix, ports chosen by the OS (0) and quiet logs.
 */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    REDIS_URL,
    REDIS_PREFIX: uniquePrefix(),
    PRODUCER_PORT: "0",
    SIM_PORT: "0",
    ADMIN_PORT: "0",
    LOG_LEVEL: "silent",
    SEGMENT_WRITE_KEY: "test-write-key",
    HYDRA_API_KEY: "test-hydra-key",
    HYDRA_API_URL: "http://127.0.0.1:1",
    ...overrides,
  });
}
