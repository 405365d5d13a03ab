/** Maximum number of events that Hydra takes in one POST /v1/batch request. */
export const MAX_BATCH_EVENTS = 500;

/** Maximum request body that Hydra takes, in bytes, measured before any gzip encoding (512 KiB). */
export const MAX_BODY_BYTES = 524_288;
