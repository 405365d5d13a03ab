import { createHash, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, Response } from "express";

import type { Logger } from "../logging/logger.js";

export interface BasicCredentials {
  user: string;
  password: string;
}

/** Realm that browsers show in their log-in prompt. */
const REALM = "hydra-sync admin";

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Compares two strings in time that does not depend on where they differ or on their lengths. */
function sameText(actual: string, expected: string): boolean {
  return timingSafeEqual(digest(actual), digest(expected));
}

/** Decodes an `Authorization: Basic ...` header; returns undefined when it is missing or malformed. */
export function parseBasicAuthorization(header: string | undefined): BasicCredentials | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;

  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const separator = decoded.indexOf(":");
  if (separator < 0) return undefined;
  return { user: decoded.slice(0, separator), password: decoded.slice(separator + 1) };
}

/**
 * Returns Express middleware that requires HTTP Basic authentication with `expected`
 * and responds with 401 and a WWW-Authenticate challenge otherwise. Both the user and the
 * password are always compared, so a wrong user name takes as long as a wrong password.
 */
export function basicAuth(expected: BasicCredentials, logger?: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const given = parseBasicAuthorization(req.headers.authorization);
    const userMatches = sameText(given?.user ?? "", expected.user);
    const passwordMatches = sameText(given?.password ?? "", expected.password);

    if (given && userMatches && passwordMatches) {
      next();
      return;
    }

    // A browser's first request comes without credentials, so only wrong ones are logged.
    if (given) logger?.warn({ method: req.method, path: req.path, remoteAddress: req.socket.remoteAddress }, "admin request rejected: wrong HTTP Basic credentials");
    res.set("WWW-Authenticate", `Basic realm="${REALM}", charset="UTF-8"`);
    res.status(401).json({ error: "Authentication required: send the ADMIN_USER and ADMIN_PASSWORD credentials with HTTP Basic." });
  };
}
