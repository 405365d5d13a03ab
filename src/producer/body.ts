import type { IncomingMessage } from "node:http";
import { gunzip } from "node:zlib";

import { RequestError } from "./errors.js";

/** Size limit of a request body, in bytes after decompression, and its name for error messages. */
export interface BodyLimit {
  maxBytes: number;
  /** For example "500 KiB per batch request". */
  label: string;
}

/** The body as it arrived on the wire (for signatures) and as JSON text bytes. */
export interface RequestBody {
  raw: Buffer;
  decoded: Buffer;
}

type ContentEncoding = "identity" | "gzip";

function contentEncodingOf(req: IncomingMessage): ContentEncoding {
  const header = req.headers["content-encoding"];
  if (header === undefined) return "identity";

  const value = header.trim().toLowerCase();
  if (value === "" || value === "identity") return "identity";
  if (value === "gzip" || value === "x-gzip") return "gzip";
  throw new RequestError(415, "unsupported_encoding", `Content-Encoding "${header}" is not supported; send the body as is or with gzip.`);
}

function tooLarge(limit: BodyLimit): RequestError {
  return new RequestError(413, "payload_too_large", `The request body is larger than ${limit.label}; send fewer or smaller events per request.`);
}

/**
 * Most bytes a gzip body may take on the wire when its content fits `maxBytes`: deflate's
 * stored blocks add 5 bytes per 64 KiB, and gzip adds a header and a trailer.
 */
function maxGzipBytes(maxBytes: number): number {
  return maxBytes + (maxBytes >>> 10) + 64;
}

/**
 * Reads a request body, stopping at the size limit: a longer body fails with 413 as soon
 * as the limit is passed, before the rest is read. A gzip body (Content-Encoding: gzip)
 * is decompressed with the same limit on its output, which stops gzip bombs.
 *
 * @throws RequestError 413 over the limit, 415 for another Content-Encoding, 400 for
 * gzip data that cannot be decompressed.
 */
export async function readBody(req: IncomingMessage, limit: BodyLimit): Promise<RequestBody> {
  const encoding = contentEncodingOf(req);
  const maxWireBytes = encoding === "gzip" ? maxGzipBytes(limit.maxBytes) : limit.maxBytes;

  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > maxWireBytes) {
    throw tooLarge(limit);
  }

  const raw = await readRaw(req, maxWireBytes, limit);
  if (encoding === "identity") return { raw, decoded: raw };

  const decoded = await gunzipWithLimit(raw, limit);
  return { raw, decoded };
}

function readRaw(req: IncomingMessage, maxBytes: number, limit: BodyLimit): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;

    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBytes) {
        // The stream stays in flowing mode without a listener, so Node reads and drops
        // the rest of the body while the 413 goes out.
        cleanup();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(new RequestError(400, "invalid_body", `The request body could not be read (${error.message}).`));
    };
    const onClose = () => {
      cleanup();
      reject(new RequestError(400, "invalid_body", "The client closed the connection before the request body ended."));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };

    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

function gunzipWithLimit(compressed: Buffer, limit: BodyLimit): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gunzip(compressed, { maxOutputLength: limit.maxBytes }, (error, output) => {
      if (error === null) {
        resolve(output);
      } else if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        reject(tooLarge(limit));
      } else {
        reject(new RequestError(400, "invalid_gzip", `The request body is not valid gzip data (${error.message}); send it uncompressed or fix the encoding.`));
      }
    });
  });
}
