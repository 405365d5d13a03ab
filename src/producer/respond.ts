import type { ServerResponse } from "node:http";

import type { RequestError } from "./errors.js";
import type { IndexedRejection } from "./ingest.js";

const SUCCESS_BODY = '{"success":true}';

/**
 * Sends a JSON response and ends it. Every response allows any origin, because
 * analytics.js posts from the browser pages of the sites it runs on.
 */
export function sendJson(res: ServerResponse, status: number, body: string, closeConnection = false): void {
  if (res.headersSent) {
    res.end();
    return;
  }

  // A flat [name, value, ...] list is the cheapest form writeHead takes.
  const headers = ["Content-Type", "application/json", "Content-Length", String(Buffer.byteLength(body)), "Access-Control-Allow-Origin", "*"];
  if (closeConnection) headers.push("Connection", "close");
  res.writeHead(status, headers);
  res.end(body);
}

export function sendSuccess(res: ServerResponse, rejected: readonly IndexedRejection[], closeConnection: boolean): void {
  const body = rejected.length === 0 ? SUCCESS_BODY : JSON.stringify({ success: true, rejected });
  sendJson(res, 200, body, closeConnection);
}

export function errorBody(code: string, message: string, field?: string): string {
  return JSON.stringify({ success: false, error: field === undefined ? { code, message } : { code, message, field } });
}

export function sendError(res: ServerResponse, error: RequestError, closeConnection: boolean): void {
  if (error.status === 405) res.setHeader("Allow", "POST, OPTIONS");
  sendJson(res, error.status, errorBody(error.code, error.message, error.field), closeConnection);
}

/** Responds to a CORS preflight request for the Tracking API. */
export function sendPreflight(res: ServerResponse): void {
  res.statusCode = 204;
  res.setHeader("Access-Control-Allow-Origin", "*");
  res.setHeader("Access-Control-Allow-Methods", "POST, OPTIONS");
  res.setHeader("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-Encoding, X-Signature");
  res.setHeader("Access-Control-Max-Age", "86400");
  res.end();
}
