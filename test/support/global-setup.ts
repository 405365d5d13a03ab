import { Redis } from "ioredis";

/**
 * Checks that Redis is reachable at REDIS_URL before any test runs. When it is not and
 * a Docker engine is available, starts Redis with testcontainers for the run.
 */
export default async function setup(): Promise<(() => Promise<void>) | void> {
  const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  if (await answers(url)) {
    process.env.REDIS_URL = url;
    return;
  }

  let container: { getHost(): string; getMappedPort(port: number): number; stop(): Promise<unknown> } | undefined;
  try {
    const { GenericContainer } = await import("testcontainers");
    container = await new GenericContainer("redis:7-alpine").withExposedPorts(6379).start();
  } catch (error) {
    throw new Error(
      `No Redis answered at ${url}, and none could be started with testcontainers (${(error as Error).message}). ` +
        "Start one with `redis-server` or `docker compose up redis`, or set REDIS_URL.",
    );
  }

  process.env.REDIS_URL = `redis://${container.getHost()}:${container.getMappedPort(6379)}`;
  return async () => {
    await container?.stop();
  };
}

async function answers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => {});
  try {
    await redis.connect();
    await redis.ping();
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}
