/**
 * Where "now" comes from. Services take one so that tests can move time forward by days
 * (grace periods, label expiry) without waiting; production uses the system clock.
 */
export interface Clock {
  now(): Date
}

export const systemClock: Clock = { now: () => new Date() }
