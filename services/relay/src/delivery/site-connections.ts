import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '@atmos/runtime'
import {
  MxConnection,
  type MxConnectionOptions,
  OPPORTUNISTIC,
  type SendResult,
  TlsPolicyError,
} from './mx-connection.ts'
import type { MxHost } from './mx-routes.ts'
import type { SiteLimiter } from './site-limiter.ts'
import type { Site } from './sites.ts'
import type { HostTls, TlsRecord } from './tls/policy.ts'

/** How long a host that refused a connection is tried after the others. */
const HOST_DOWN_MS = 60_000

/** How often a delivery waiting for a site's slot asks Redis again. */
const SLOT_POLL_MS = 50

/** The result of one attempt at one recipient, with the host and address it reached. */
export type Attempt =
  | (SendResult & { mxHost: string; mxAddress: string; tls: TlsRecord })
  | { kind: 'unreachable'; reason: string; mxHost?: string; mxAddress?: string; tls?: TlsRecord }
  | { kind: 'no-slot' }

/** The TLS each host must offer, and whether the message asked for REQUIRETLS. */
export type DeliveryTls = { host: (h: MxHost) => HostTls; requireTls: boolean }

const NO_POLICY: DeliveryTls = { host: () => OPPORTUNISTIC, requireTls: false }

/** A session holding one of its site's slots, for exactly as long as its socket is open. */
type Held = {
  site: string
  limit: number
  token: string
  mx: MxConnection
  idleTimer?: NodeJS.Timeout
  retiring: boolean
}

type SiteState = { idle: Held[]; open: Set<Held>; waiters: Set<() => void> }

export type SiteConnectionsOptions = {
  limiter: SiteLimiter
  logger: Logger
  connection: MxConnectionOptions
  idleTimeoutMs: number
  slotWaitMs: number
  slotLeaseMs: number
  /** Whether a reply says the site defers us for reputation (it then slows down for everyone). */
  isReputationDeferral: (result: SendResult) => boolean
  /** Called for every session opened, for metrics. */
  onOpen?: (site: string) => void
}

/**
 * This process's SMTP sessions, pooled per MX site. A session is opened only after a slot
 * of its site is taken in Redis, reused for up to the site's messages per connection,
 * closed after it idles, and its slot released once the socket is closed: so however many
 * processes deliver, a site never sees more sessions than its limit.
 */
export class SiteConnections {
  private readonly opts: SiteConnectionsOptions
  private readonly sites = new Map<string, SiteState>()
  private readonly closing = new Set<Promise<void>>()
  /** MX hosts that refused a connection lately, until when: tried last meanwhile. */
  private readonly down = new Map<string, number>()
  private heartbeat: NodeJS.Timeout | undefined
  private stopped = false

  constructor(opts: SiteConnectionsOptions) {
    this.opts = opts
    this.heartbeat = setInterval(() => void this.renewAll(), Math.max(50, Math.floor(opts.slotLeaseMs / 3)))
    this.heartbeat.unref()
  }

  private state(site: string): SiteState {
    let s = this.sites.get(site)
    if (!s) {
      s = { idle: [], open: new Set(), waiters: new Set() }
      this.sites.set(site, s)
    }
    return s
  }

  /**
   * Sends one message over a session to the site, opening one when a slot is free; waits up
   * to slotWait. Hosts the TLS policy refuses are skipped; a session is reused only for a
   * host with the same TLS requirement it was opened under.
   */
  async deliver(
    site: Site,
    hosts: MxHost[],
    from: string,
    to: string,
    body: Buffer,
    tls: DeliveryTls = NO_POLICY,
  ): Promise<Attempt> {
    const deadline = Date.now() + this.opts.slotWaitMs
    const policies = new Map(hosts.map((h) => [h.name, tls.host(h)]))
    const refused = hosts.flatMap((h) => {
      const p = policies.get(h.name)
      return p?.refused ? [{ h, p }] : []
    })
    const ordered = this.byReachability(hosts.filter((h) => !policies.get(h.name)?.refused))
    if (ordered.length === 0) {
      const first = refused[0]
      return {
        kind: 'unreachable',
        reason: refused.map((r) => r.p.refused).join('; ') || 'no MX host to try',
        ...(first ? { mxHost: first.h.name, tls: refusal(first.p) } : {}),
      }
    }
    // Reuse a session only to a host as preferred as the best one now reachable: MX
    // preference is the domain's choice, not ours.
    const top = ordered[0]?.preference
    const names = new Set(
      ordered.filter((h) => h.preference === top).map((h) => `${h.name} ${policies.get(h.name)?.key ?? 'none'}`),
    )
    let freshOnly = false
    for (;;) {
      if (this.stopped) return { kind: 'no-slot' }
      const state = this.state(site.key)
      let held = freshOnly ? undefined : this.takeIdle(state, names)
      if (!held) {
        // An idle session to hosts this domain does not use only blocks a slot.
        const stranger = state.idle.shift()
        if (stranger) await this.retire(stranger)
        const token = randomUUID()
        if (await this.opts.limiter.tryAcquire(site.key, token, site.maxConnections)) {
          const opened = await this.open(site, token, ordered, policies)
          if ('kind' in opened) return opened
          held = opened
        } else {
          const left = deadline - Date.now()
          if (left <= 0) return { kind: 'no-slot' }
          await this.waitForSlot(state, Math.min(left, SLOT_POLL_MS))
          continue
        }
      }
      for (let wait = await this.opts.limiter.messageDelay(site.key); wait > 0; ) {
        await sleep(wait)
        wait = await this.opts.limiter.messageDelay(site.key)
      }
      const result = await held.mx.send(from, to, body, tls.requireTls)
      await this.afterSend(site, held, result)
      if (result.kind === 'transport' && result.retryable && !freshOnly) {
        freshOnly = true
        continue
      }
      return { ...result, mxHost: held.mx.hostName, mxAddress: held.mx.address, tls: held.mx.tls }
    }
  }

  private takeIdle(state: SiteState, names: Set<string>): Held | undefined {
    const i = state.idle.findIndex((h) => names.has(`${h.mx.hostName} ${h.mx.tlsKey}`) && h.mx.isOpen && !h.retiring)
    if (i < 0) return undefined
    const [held] = state.idle.splice(i, 1)
    clearTimeout(held?.idleTimer)
    return held
  }

  /** Hosts by preference, those that refused a connection lately moved to the end. */
  private byReachability(hosts: MxHost[]): MxHost[] {
    const now = Date.now()
    const isDown = (h: MxHost) => (this.down.get(h.name) ?? 0) > now
    return [...hosts.filter((h) => !isDown(h)), ...hosts.filter(isDown)]
  }

  /** Tries each host in turn and each of its addresses until one session opens. */
  private async open(
    site: Site,
    token: string,
    hosts: MxHost[],
    policies: Map<string, HostTls>,
  ): Promise<Held | Attempt> {
    let failure: Attempt = { kind: 'unreachable', reason: 'no MX host to try' }
    for (const host of hosts) {
      for (const address of host.addresses) {
        try {
          const mx = await MxConnection.open(host.name, address, this.opts.connection, policies.get(host.name))
          this.down.delete(host.name)
          const held: Held = { site: site.key, limit: site.maxConnections, token, mx, retiring: false }
          this.state(site.key).open.add(held)
          this.opts.onOpen?.(site.key)
          // The peer may close the session at any time; its slot is released only then.
          void mx.ended.then(() => this.onEnded(held))
          return held
        } catch (err) {
          const e = err as Error & { code?: string; response?: string }
          const reason = e.response ? `${e.message}: ${e.response}` : `${e.message} (${e.code ?? 'EUNKNOWN'})`
          failure = { kind: 'unreachable', reason, mxHost: host.name, mxAddress: address }
          if (err instanceof TlsPolicyError) {
            // It answered: not down, only not good enough for this domain's policy.
            failure = { ...failure, reason: `4.7.5 ${err.message}`, tls: err.tls }
            continue
          }
          this.down.set(host.name, Date.now() + HOST_DOWN_MS)
          if (this.down.size > 10_000) this.down.clear()
          this.opts.logger.debug({ mx: host.name, address, err: reason }, 'MX host not reachable; trying the next')
        }
      }
    }
    await this.opts.limiter.release(site.key, token).catch(() => {})
    return failure
  }

  private async afterSend(site: Site, held: Held, result: SendResult): Promise<void> {
    if (result.kind === 'reply' && this.opts.isReputationDeferral(result)) {
      await this.opts.limiter.slowDown(site.key).catch(() => {})
      this.opts.logger.warn({ site: site.key, reply: result.response }, 'site defers for reputation; slowing down')
    }
    const refused = result.kind === 'reply' && result.reply.code >= 400
    let usable =
      held.mx.isOpen &&
      !held.retiring &&
      !this.stopped &&
      result.kind === 'reply' &&
      result.reply.code !== 421 &&
      held.mx.messages < site.messagesPerConnection
    if (usable && refused) usable = await held.mx.reset()
    if (usable) this.makeIdle(held)
    else await this.retire(held)
  }

  private makeIdle(held: Held): void {
    const state = this.state(held.site)
    held.idleTimer = setTimeout(() => {
      const i = state.idle.indexOf(held)
      if (i >= 0) state.idle.splice(i, 1)
      void this.retire(held)
    }, this.opts.idleTimeoutMs)
    held.idleTimer.unref()
    state.idle.push(held)
    this.notify(held.site)
  }

  /** Closes the session; its slot is released once the socket is closed. */
  private retire(held: Held): Promise<void> {
    held.retiring = true
    clearTimeout(held.idleTimer)
    const done = held.mx.quit().then(() => this.onEnded(held))
    this.closing.add(done)
    void done.finally(() => this.closing.delete(done))
    return done
  }

  private async onEnded(held: Held): Promise<void> {
    const state = this.state(held.site)
    if (!state.open.delete(held)) return
    const i = state.idle.indexOf(held)
    if (i >= 0) state.idle.splice(i, 1)
    clearTimeout(held.idleTimer)
    // Local waiters are not woken here: a freed slot goes to whichever process polls
    // first, so one busy process cannot keep a site to itself.
    await this.opts.limiter.release(held.site, held.token).catch(() => {})
  }

  private waitForSlot(state: SiteState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        state.waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      state.waiters.add(done)
    })
  }

  private notify(site: string): void {
    const state = this.sites.get(site)
    const first = state?.waiters.values().next().value
    first?.()
  }

  /**
   * Keeps every held slot's lease alive. A lease found gone (Redis lost its data, or this
   * process stalled past it) is taken again if the site has room, else the session closes,
   * so that the site's limit holds again at once.
   */
  private async renewAll(): Promise<void> {
    for (const state of this.sites.values()) {
      for (const held of state.open) {
        if (held.retiring) continue
        try {
          if (await this.opts.limiter.renew(held.site, held.token)) continue
          if (await this.opts.limiter.tryAcquire(held.site, held.token, held.limit)) continue
          const i = state.idle.indexOf(held)
          if (i >= 0) {
            state.idle.splice(i, 1)
            void this.retire(held)
          } else {
            // Busy: it closes once its message is done.
            held.retiring = true
          }
        } catch {
          // Redis unreachable: the lease runs on; the next beat tries again.
        }
      }
    }
  }

  /** Sessions open now to a site, in this process. */
  openCount(site: string): number {
    return this.sites.get(site)?.open.size ?? 0
  }

  /** Closes every session (after their messages finish) and releases their slots. */
  async close(): Promise<void> {
    this.stopped = true
    clearInterval(this.heartbeat)
    for (const state of this.sites.values()) {
      for (const held of state.idle.splice(0)) void this.retire(held)
      for (const w of [...state.waiters]) w()
    }
    await Promise.allSettled([...this.closing])
  }
}

function refusal(p: HostTls): TlsRecord {
  return {
    policy: p.policy,
    ...(p.mode ? { mode: p.mode } : {}),
    ...(p.requireTls ? { requireTls: true as const } : {}),
    verified: false,
    failure: p.refused ?? '',
  }
}
