import type { IncomingMessage, ServerResponse } from "node:http";

/** A request body read up to a limit; past the limit the rest is drained and dropped. */
export interface ReadBody {
  body: Buffer;
  /** Bytes that arrived, the dropped ones included. */
  size: number;
  overLimit: boolean;
}

export async function readBody(request: IncomingMessage, maxBytes: number): Promise<ReadBody> {
  const chunks: Buffer[] = [];
  let size = 0;

  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= maxBytes) chunks.push(chunk);
  }

  const overLimit = size > maxBytes;
  return { body: overLimit ? Buffer.alloc(0) : Buffer.concat(chunks), size, overLimit };
}

/** Sends a JSON response unless the client is gone. */
export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendText(response, status, JSON.stringify(body), headers);
}

export function sendText(response: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  if (response.destroyed || response.headersSent) return;

  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  response.end(text);
}

/** Returns the first value of a request header. */
export function headerValue(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Returns the key of an `Authorization: Bearer <key>` header, or undefined when it is missing or empty. */
export function bearerKey(request: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(headerValue(request, "authorization") ?? "");
  return match?.[1];
}
