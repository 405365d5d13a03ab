import { DeliveryError } from "../errors/delivery-error.js";

/** undici and Node.js error codes of a request that ran out of time. */
const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ETIMEDOUT"]);

/**
 * Converts an error thrown while sending a request (no HTTP status arrived) into a
 * DeliveryError. A fired timeout gives a retryable "timeout", an invalid header or
 * argument a permanent "bad_request", and anything else (refused, reset, closed socket,
 * DNS failure) a retryable "connection". A DeliveryError passes through unchanged.
 */
export function toNetworkDeliveryError(error: unknown, timeoutMs: number): DeliveryError {
  if (error instanceof DeliveryError) return error;

  const code = errorCode(error);
  const name = error instanceof Error ? error.name : "";
  const detail = error instanceof Error ? error.message : String(error);

  if (code === "UND_ERR_INVALID_ARG") {
    const delivery = new DeliveryError(`The request to Hydra could not be built (${detail}); no retry can fix it.`, "bad_request", false);
    delivery.cause = error;
    return delivery;
  }

  if (name === "TimeoutError" || (code !== undefined && TIMEOUT_CODES.has(code))) {
    const delivery = new DeliveryError(`Hydra did not respond within ${timeoutMs} ms (${code ?? name}: ${detail}).`, "timeout", true);
    delivery.cause = error;
    return delivery;
  }

  const delivery = new DeliveryError(`The request to Hydra failed before a response arrived (${code ?? name}: ${detail}).`, "connection", true);
  delivery.cause = error;
  return delivery;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;

  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return code;

  // Node.js wraps the errors of a multi-address connect in an AggregateError whose
  // members carry the codes.
  if (error instanceof AggregateError && error.errors.length > 0) return errorCode(error.errors[0]);

  const cause = (error as { cause?: unknown }).cause;
  return cause === undefined ? undefined : errorCode(cause);
}
