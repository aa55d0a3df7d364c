import type { Db } from '@atmos/db'
import { sql } from 'drizzle-orm'

/**
 * Deletes reports (their rows with them) whose range ended more than `retentionMs` ago, in
 * bounded batches: a report lists other people's addresses and is useful for as long as a
 * member looks back (the account shows 30 days). Returns how many reports went.
 */
export async function purgeDmarcReports(db: Db, retentionMs: number, batch = 500, maxBatches = 10): Promise<number> {
  let purged = 0
  for (let i = 0; i < maxBatches; i++) {
    const rows = await db.execute<{ id: string }>(sql`
      with picked as materialized (
        select id from dmarc_reports
        where date_end <= now() - make_interval(secs => ${retentionMs / 1000})
        order by date_end
        limit ${batch}
        for update skip locked)
      delete from dmarc_reports r using picked where r.id = picked.id
      returning r.id`)
    purged += rows.length
    if (rows.length < batch) break
  }
  return purged
}
