/**
 * The reference server of the ingest benchmarks: plain node:http that reads the request
 * body, parses it as JSON and responds 200 with the producer's success body. It stores
 * nothing, so it shows what node:http and JSON.parse alone cost on this machine.
 *
 * Usage: node dist/bench/support/bare-server.js PORT
 * Listens on 127.0.0.1:PORT, prints "bare server listening on <url>" once ready, and
 * stops on SIGTERM or SIGINT.
 */
import { createServer } from "node:http";

const SUCCESS_BODY = '{"success":true}';
const INVALID_BODY = '{"success":false}';

const port = Number(process.argv[2] ?? "0");
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`Invalid port ${process.argv[2]}: use a TCP port from 0 to 65535.`);
  process.exit(1);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    let status = 200;
    try {
      JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      status = 400;
    }
    const body = status === 200 ? SUCCESS_BODY : INVALID_BODY;
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(`bare server listening on http://127.0.0.1:${port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
