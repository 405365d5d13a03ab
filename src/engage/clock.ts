/**
 * Source of the current time for the Engage sync schedule, in UTC epoch milliseconds.
 * Tests pass a clock they advance by hand, so days of syncs run in milliseconds.
 */
export interface Clock {
  now(): number;
}

/** The process clock, Date.now(). */
export const systemClock: Clock = {
  now: () => Date.now(),
};
