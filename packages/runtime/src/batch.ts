/**
 * Gathers calls made in the same turn of the event loop into one batch: `run` gets every
 * input gathered and returns one output per input, in order. Many concurrent workers
 * each wanting one row changed then cost one round trip (and one commit) between them
 * instead of one each: on a busy relay the round trips, not the statements, are the cost.
 *
 * When a batch fails as a whole, each of its inputs is retried on its own, so that one bad
 * input fails only its own call.
 */
export class Batcher<I, O> {
  private readonly run: (inputs: I[]) => Promise<O[]>
  private readonly maxSize: number
  private pending: Array<{ input: I; resolve: (o: O) => void; reject: (e: unknown) => void }> = []
  private scheduled = false

  constructor(run: (inputs: I[]) => Promise<O[]>, opts: { maxSize?: number } = {}) {
    this.run = run
    this.maxSize = opts.maxSize ?? 100
  }

  call(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ input, resolve, reject })
      if (this.pending.length >= this.maxSize) this.flush()
      else if (!this.scheduled) {
        this.scheduled = true
        // After the I/O callbacks of this turn, which is when concurrent workers' calls arrive.
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.scheduled = false
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    this.run(batch.map((b) => b.input)).then(
      (outputs) => {
        if (outputs.length !== batch.length) {
          const err = new Error(`batch returned ${outputs.length} results for ${batch.length} inputs`)
          for (const b of batch) b.reject(err)
          return
        }
        for (const [i, b] of batch.entries()) b.resolve(outputs[i] as O)
      },
      (err: unknown) => {
        if (batch.length === 1) {
          batch[0]?.reject(err)
          return
        }
        for (const b of batch) {
          this.run([b.input]).then((outputs) => b.resolve(outputs[0] as O), b.reject)
        }
      },
    )
  }
}
