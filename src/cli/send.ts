import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { request } from "undici";

/** Segment's limits for one /v1/batch request; `send` stays below them. */
const MAX_EVENTS_PER_REQUEST = 500;
const MAX_REQUEST_BYTES = 450 * 1_024;

export interface SendOptions {
  file: string;
  /** Producer base URL, such as http://127.0.0.1:3000. */
  url: string;
  writeKey: string;
  /** Stream for progress lines. @defaultValue process.stderr */
  progress?: NodeJS.WritableStream;
}

/** A line of the file that was not accepted, with its 1-based line number. */
export interface SendRejection {
  line: number;
  reason: string;
  message: string;
}

export interface SendReport {
  lines: number;
  accepted: number;
  rejected: SendRejection[];
  requests: number;
}

/** The producer could not be reached or rejected a whole request. Not retryable by `send`. */
export class SendError extends Error {
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = "SendError";
  }
}

/**
 * Posts a JSONL file of Segment events to the producer in /v1/batch requests, one
 * request at a time so each user's events keep the file's order. Invalid JSON lines are
 * reported and not sent.
 */
export async function sendFile(options: SendOptions): Promise<SendReport> {
  const progress = options.progress ?? process.stderr;
  const report: SendReport = { lines: 0, accepted: 0, rejected: [], requests: 0 };
  const authorization = `Basic ${Buffer.from(`${options.writeKey}:`).toString("base64")}`;

  let batch: string[] = [];
  let batchLines: number[] = [];
  let batchBytes = 0;

  const flush = async () => {
    if (batch.length === 0) return;
    await postBatch(options.url, authorization, batch, batchLines, report);
    batch = [];
    batchLines = [];
    batchBytes = 0;
    progress.write(`sent ${report.lines} lines: ${report.accepted} accepted, ${report.rejected.length} rejected\n`);
  };

  const lines = createInterface({ input: createReadStream(options.file, "utf8"), crlfDelay: Infinity });
  for await (const line of lines) {
    report.lines++;
    const text = line.trim();
    if (text === "") continue;

    try {
      const parsed = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
    } catch (error) {
      report.rejected.push({ line: report.lines, reason: "invalid_json", message: `line is not a JSON object (${(error as Error).message})` });
      continue;
    }

    const bytes = Buffer.byteLength(text);
    if (batch.length >= MAX_EVENTS_PER_REQUEST || (batch.length > 0 && batchBytes + bytes + 1 > MAX_REQUEST_BYTES)) await flush();
    batch.push(text);
    batchLines.push(report.lines);
    batchBytes += bytes + 1;
  }
  await flush();
  return report;
}

async function postBatch(url: string, authorization: string, events: string[], lines: number[], report: SendReport): Promise<void> {
  const body = `{"batch":[${events.join(",")}],"sentAt":"${new Date().toISOString()}"}`;

  let response;
  try {
    response = await request(`${url.replace(/\/+$/, "")}/v1/batch`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization },
      body,
    });
  } catch (error) {
    throw new SendError(`could not reach the producer at ${url} (${(error as Error).message}); start it with \`hydra-sync start\` or pass --url`);
  }
  report.requests++;

  const text = await response.body.text();
  if (response.statusCode !== 200) {
    throw new SendError(`the producer responded with ${response.statusCode} to a batch of ${events.length} events (lines ${lines[0]}-${lines.at(-1)}): ${text.slice(0, 500)}`);
  }

  const reply = JSON.parse(text) as { rejected?: { index: number; reason: string; message: string }[] };
  const rejected = reply.rejected ?? [];
  for (const rejection of rejected) {
    report.rejected.push({ line: lines[rejection.index], reason: rejection.reason, message: rejection.message });
  }
  report.accepted += events.length - rejected.length;
}
