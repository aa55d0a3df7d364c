/** A clock a test moves by hand: time stands still unless advanced. */
// Structurally a @atmos/runtime Clock (testkit does not depend on runtime).
export class ManualClock {
  private ms: number

  constructor(start: Date | number = Date.now()) {
    this.ms = typeof start === 'number' ? start : start.getTime()
  }

  now(): Date {
    return new Date(this.ms)
  }

  advance(ms: number): void {
    this.ms += ms
  }

  set(at: Date | number): void {
    this.ms = typeof at === 'number' ? at : at.getTime()
  }
}
