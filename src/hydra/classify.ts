import type { DeliveryErrorCode } from "../errors/delivery-error.js";

/**
 * Class of an HTTP status from Hydra: the DeliveryErrorCode of a failure, "accepted" for
 * a success and "multi_status" for a 207 whose body contains per-event results.
 */
export type StatusClass = "accepted" | "multi_status" | DeliveryErrorCode;

export interface StatusClassification {
  code: StatusClass;
  /** True when the same request or event may succeed on a later attempt. */
  retryable: boolean;
}

/**
 * Classifies a status that Hydra returned for a batch or, inside a 207, for one event.
 * This is the one table that the client, the worker and the docs follow:
 *
 * | status                         | code             | retryable |
 * | ------------------------------ | ---------------- | --------- |
 * | 2xx but 207                    | accepted         | no        |
 * | 207                            | multi_status     | no        |
 * | 400                            | bad_request      | no        |
 * | 401, 403                       | unauthorized     | yes: the events are kept while the API key is paused |
 * | 408                            | timeout          | yes       |
 * | 413                            | payload_too_large| no: the client splits the batch instead |
 * | 423                            | transient        | yes       |
 * | 429                            | rate_limited     | yes, after Retry-After |
 * | 5xx but 501                    | transient        | yes       |
 * | 501, other 4xx                 | permanent        | no        |
 * | 1xx, 3xx, 600 and above        | transient        | yes       |
 */
export function classifyStatus(status: number): StatusClassification {
  if (status === 207) return { code: "multi_status", retryable: false };
  if (status >= 200 && status <= 299) return { code: "accepted", retryable: false };

  switch (status) {
    case 400:
      return { code: "bad_request", retryable: false };
    case 401:
    case 403:
      return { code: "unauthorized", retryable: true };
    case 408:
      return { code: "timeout", retryable: true };
    case 413:
      return { code: "payload_too_large", retryable: false };
    case 423:
      return { code: "transient", retryable: true };
    case 429:
      return { code: "rate_limited", retryable: true };
    case 501:
      return { code: "permanent", retryable: false };
  }

  if (status >= 400 && status <= 499) return { code: "permanent", retryable: false };
  if (status >= 500 && status <= 599) return { code: "transient", retryable: true };

  // NOTE: the contract names no 1xx, 3xx or out-of-range status. Treating them as
  // transient keeps the events (a misrouted HYDRA_API_URL then shows as retries, not
  // as dead letters) until the retry window ends.
  return { code: "transient", retryable: true };
}
