import type { SiteLimits, SiteRule } from './config.ts'
import type { MxHost } from './mx-routes.ts'

/** The shaping key of a destination and the limits every process applies to it. */
export type Site = { key: string } & SiteLimits

/**
 * Domains whose mail goes to the same MX hosts share one site, so thousands of Google
 * Workspace domains count against Gmail's limits together. A known provider is matched
 * by its MX host suffix; any other site is the parent domain of its preferred MX host
 * (mx1.example.net and mx2.example.net are example.net).
 */
export function siteOf(hosts: MxHost[], rules: SiteRule[], fallback: SiteLimits): Site {
  const host = hosts[0]?.name ?? ''
  for (const rule of rules) {
    if (rule.mxSuffixes.some((suffix) => host === suffix || host.endsWith(`.${suffix.replace(/^\./, '')}`))) {
      return { key: rule.name, maxConnections: rule.maxConnections, messagesPerConnection: rule.messagesPerConnection }
    }
  }
  const labels = host.split('.')
  const key = labels.length > 2 ? labels.slice(1).join('.') : host
  return { key: `mx:${key}`, ...fallback }
}
