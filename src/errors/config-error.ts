/**
 * Invalid configuration found at start-up. Not retryable: the process stops and the
 * message names the variable, the value and the fix.
 */
export class ConfigError extends Error {
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}
