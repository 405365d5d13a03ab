import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Each file starts servers and workers of its own, so running files one at a time
    // keeps ports and CPU free for the two-core machines the suite runs on.
    fileParallelism: false,
  },
});
