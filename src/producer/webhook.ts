import { createHmac, timingSafeEqual } from "node:crypto";

/** Header in which the Segment Webhooks destination sends its signature. */
export const SIGNATURE_HEADER = "x-signature";

/** Returns the signature Segment computes: hex HMAC-SHA1 of the raw body keyed with the shared secret. */
export function signWebhookBody(body: Buffer | string, secret: string): string {
  return createHmac("sha1", secret).update(body).digest("hex");
}

/**
 * Returns whether `signature` (hex) is the HMAC-SHA1 of the raw body under `secret`,
 * compared in constant time.
 */
export function isValidWebhookSignature(body: Buffer, signature: string | string[] | undefined, secret: string): boolean {
  if (typeof signature !== "string" || signature === "") return false;

  const expected = createHmac("sha1", secret).update(body).digest();
  const given = Buffer.from(signature.trim(), "hex");
  if (given.length !== expected.length) return false;
  return timingSafeEqual(given, expected);
}
