import type { EventType } from "./validate.js";

/** Body format of a Tracking API path. */
export type Endpoint =
  /** One event of the path's type, such as /v1/track. */
  | { kind: "single"; type: EventType }
  /** `{ batch: [...], context?, integrations?, sentAt? }`: /v1/batch and its legacy name /v1/import. */
  | { kind: "batch" }
  /** A Segment Webhooks destination delivery: one event or a JSON array of events. */
  | { kind: "webhook" };

const SINGLE_TYPES: readonly EventType[] = ["identify", "track", "page", "screen", "group", "alias"];

const ENDPOINTS = new Map<string, Endpoint>([
  ...SINGLE_TYPES.map((type): [string, Endpoint] => [`/v1/${type}`, { kind: "single", type }]),
  ["/v1/batch", { kind: "batch" }],
  ["/v1/import", { kind: "batch" }],
  ["/v1/webhook", { kind: "webhook" }],
]);

/** Returns the endpoint of a request URL, ignoring its query string and a trailing slash. */
export function endpointOf(url: string | undefined): Endpoint | undefined {
  if (url === undefined) return undefined;

  const query = url.indexOf("?");
  let path = query < 0 ? url : url.slice(0, query);
  if (path.length > 1 && path.endsWith("/")) path = path.slice(0, -1);
  return ENDPOINTS.get(path);
}
