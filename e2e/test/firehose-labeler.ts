import { loadConfig } from '@atmos/config'
import { LabelerService } from '@atmos/labeler'
import { labelerConfigSchema } from '@atmos/labeler/config'
import { firehoseLive } from '@atmos/labeler/test-harness'

/**
 * A labeler in this process reading a real PDS's firehose (subscribeRepos), as the local
 * stack runs it: `env` is what labelerEnv gave (its DNS, PLC and signing key), `extra` the
 * test's own settings. Resolves once the subscription has taken an event, so that nothing
 * the test writes afterwards is missed.
 */
export async function startFirehoseLabeler(opts: {
  env: Record<string, string>
  databaseUrl: string
  pdsUrl: string
  extra?: Record<string, string>
}): Promise<LabelerService> {
  const env = {
    ...opts.env,
    ATMOS_DATABASE_URL: opts.databaseUrl,
    ATMOS_LABELER_INGEST_SOURCE: 'firehose',
    ATMOS_LABELER_INGEST_FIREHOSE_URL: opts.pdsUrl,
    ...opts.extra,
  }
  const labeler = await LabelerService.create(loadConfig(labelerConfigSchema, { env }))
  try {
    await labeler.start()
    await labeler.whenStarted()
    await firehoseLive(labeler, opts.pdsUrl)
  } catch (err) {
    await labeler.destroy()
    throw err
  }
  return labeler
}
