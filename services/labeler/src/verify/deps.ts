import { getServers } from 'node:dns'
import { createDnsResolver, createIdentityResolver, type VerifyDeps } from '@atmos/verify'
import type { LabelerConfig } from '../config.ts'

/** The DNS and identity resolvers the checks use, as configured (shared by the worker and the CLI). */
export function createVerifyDeps(config: LabelerConfig): VerifyDeps {
  const v = config.labeler.verify
  const dns = createDnsResolver({
    // Without a resolv.conf c-ares itself falls back to 127.0.0.1; so do we.
    servers: v.dnsServers.length ? v.dnsServers : getServers().length ? getServers() : ['127.0.0.1'],
    port: v.dnsPort || undefined,
    timeoutMs: v.dnsTimeout,
    tries: v.dnsTries,
  })
  const identity = createIdentityResolver({ plcUrl: v.plcUrl, timeoutMs: v.dnsTimeout * 2 })
  return { dns, identity }
}
