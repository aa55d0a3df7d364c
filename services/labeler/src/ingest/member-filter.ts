import { attestations, type Db } from '@atmos/db'
import { watchedAttestation } from './account-status.ts'

/**
 * The DIDs that hold a live attestation (or one held back while the account is inactive,
 * so that its reactivation is heard), in memory. Jetstream sends identity and account
 * events for every account on the network; this set drops the ones of non-members
 * without a database query per event. Ingest is its only writer.
 */
export class MemberFilter {
  private readonly dids = new Set<string>()

  async load(db: Db): Promise<void> {
    const rows = await db.selectDistinct({ did: attestations.did }).from(attestations).where(watchedAttestation)
    this.dids.clear()
    for (const r of rows) this.dids.add(r.did)
  }

  has(did: string): boolean {
    return this.dids.has(did)
  }

  add(did: string): void {
    this.dids.add(did)
  }

  delete(did: string): void {
    this.dids.delete(did)
  }

  get size(): number {
    return this.dids.size
  }
}
