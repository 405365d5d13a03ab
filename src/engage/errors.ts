/** Why an Engage stream entry cannot update the audience state. */
export type InvalidEngageEventReason =
  | "invalid_json"
  | "not_identify"
  | "missing_user"
  | "missing_personas"
  | "unknown_computation_class"
  | "missing_computation_key"
  | "invalid_computation_key"
  | "missing_value"
  | "invalid_audience_value";

/**
 * An Engage stream entry that is not a usable audience or computed trait identify. Not
 * retryable: the entry would fail the same way again, so the consumer logs it and
 * acknowledges it.
 */
export class InvalidEngageEventError extends Error {
  readonly retryable = false;

  constructor(
    readonly reason: InvalidEngageEventReason,
    readonly entryId: string,
    detail: string,
  ) {
    super(`Engage stream entry ${entryId} is invalid (${reason}): ${detail}`);
    this.name = "InvalidEngageEventError";
  }
}
