// The relay bench's same-run reference: Postfix with OpenDKIM from Debian, set up the way a
// mail administrator would for the relay's job. Submission with STARTTLS and SASL (Cyrus,
// sasldb) only for authenticated users, each held to its own domain; both DKIM signatures
// (the sender's domain and the pool's) from one OpenDKIM milter; Postfix's own durable queue;
// delivery to the same loopback sink. It runs as its own instance in a throwaway directory
// (`postfix -c`), never touching the machine's /etc/postfix, and on loopback ports only.

import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { closedPort } from '@atmos/testkit'

const run = promisify(execFile)

export type PostfixUser = { username: string; password: string; domain: string }

export type PostfixOptions = {
  /** The loopback sink every message is relayed to (the recipients' MX). */
  sinkPort: number
  /** PEM certificate and key for STARTTLS (the relay bench's self-signed pair). */
  tlsCertFile: string
  tlsKeyFile: string
  /** Submitting users, each allowed to send only as its own domain. */
  users: PostfixUser[]
  /** The pool's domain: every message also gets its signature. */
  poolDomain: string
  /** Outbound connections to the sink, as the relay's delivery concurrency. */
  concurrency: number
}

export type PostfixInstance = {
  port: number
  /** CPU seconds Postfix (every process, exited ones included) and OpenDKIM have used so far. */
  cpuSeconds(): { postfix: number; opendkim: number }
  stop(): Promise<void>
}

/** Fails with what is missing when Postfix, OpenDKIM or the sasldb plugin is not installed. */
export function checkInstalled(): void {
  for (const bin of ['/usr/sbin/postfix', '/usr/sbin/opendkim', '/usr/sbin/saslpasswd2']) {
    try {
      readFileSync(bin)
    } catch {
      throw new Error(`${bin} is missing: scripts/bench.sh installs postfix, opendkim and sasl2-bin`)
    }
  }
}

function procCpu(pid: number, withChildren: boolean): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  // After the command name: utime, stime, cutime, cstime are fields 12–15 (0-based 11–14).
  const own = Number(fields[11]) + Number(fields[12])
  return (withChildren ? own + Number(fields[13]) + Number(fields[14]) : own) / 100
}

/** Postfix's master and every child it runs; the children it has reaped count in its cutime. */
function instanceCpu(masterPid: number): number {
  let total = procCpu(masterPid, true)
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === masterPid) continue
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const ppid = Number(stat.split(') ')[1]?.split(' ')[1])
      if (ppid === masterPid) total += procCpu(Number(pid), false)
    } catch {
      // Ended while we looked: its time is in the master's cutime now.
    }
  }
  return total
}

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  checkInstalled()
  // Not under /tmp: OpenDKIM refuses keys below a directory others may write to, rightly.
  const parent = fileURLToPath(new URL('../../.state/bench/', import.meta.url))
  mkdirSync(parent, { recursive: true, mode: 0o755 })
  const dir = mkdtempSync(join(parent, 'postfix-'))
  chmodSync(dir, 0o755)
  const conf = join(dir, 'conf')
  const queue = join(dir, 'queue')
  const data = join(dir, 'data')
  // Debian's Postfix reads its Cyrus SASL settings from $config_directory/sasl.
  const sasl = join(conf, 'sasl')
  const dkim = join(dir, 'dkim')
  for (const d of [conf, sasl, queue, data, dkim]) mkdirSync(d, { mode: 0o755 })
  const port = await closedPort()
  const milterPort = await closedPort()
  const hostname = 'postfix.bench.example'
  const { uid: postfixUid, gid: postfixGid } = await ids('postfix')
  const { uid: dkimUid, gid: dkimGid } = await ids('opendkim')
  // Postfix's data directory is its own (master.lock, TLS session caches); the queue it sets up itself.
  chownSync(data, postfixUid, postfixGid)
  chmodSync(data, 0o700)

  // One RSA-2048 key per domain, as the relay signs with (the member's and the pool's).
  const keyTable: string[] = []
  const signingTable: string[] = []
  const domains = [...new Set(opts.users.map((u) => u.domain))]
  for (const [i, domain] of [...domains, opts.poolDomain].entries()) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const file = join(dkim, `k${i}.key`)
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    chownSync(file, dkimUid, dkimGid)
    keyTable.push(`k${i} ${domain}:bench:${file}`)
    // The pool's line matches every sender; MultipleSignatures applies every matching line.
    signingTable.push(domain === opts.poolDomain ? `* k${i}` : `*@${domain} k${i}`)
  }
  writeFileSync(join(dkim, 'KeyTable'), `${keyTable.join('\n')}\n`)
  writeFileSync(join(dkim, 'SigningTable'), `${signingTable.join('\n')}\n`)
  writeFileSync(
    join(dkim, 'opendkim.conf'),
    [
      'Syslog no',
      'Mode s',
      'Background no',
      `Socket inet:${milterPort}@127.0.0.1`,
      `KeyTable file:${join(dkim, 'KeyTable')}`,
      `SigningTable refile:${join(dkim, 'SigningTable')}`,
      'MultipleSignatures yes',
      'Canonicalization relaxed/relaxed',
      'SignatureAlgorithm rsa-sha256',
      'OversignHeaders From',
      'UserID opendkim:opendkim',
      `PidFile ${join(dkim, 'opendkim.pid')}`,
      '',
    ].join('\n'),
  )

  // SASL users in a sasldb of this instance, readable by smtpd (which runs as postfix).
  const sasldb = join(sasl, 'sasldb2')
  for (const u of opts.users) {
    await new Promise<void>((resolve, reject) => {
      const p = spawn('/usr/sbin/saslpasswd2', ['-p', '-c', '-f', sasldb, '-u', hostname, u.username])
      p.on('error', reject)
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`saslpasswd2 exited ${code}`))))
      p.stdin.end(u.password)
    })
  }
  chownSync(sasldb, postfixUid, postfixGid)
  chmodSync(sasldb, 0o600)
  writeFileSync(
    join(sasl, 'smtpd.conf'),
    `pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: ${sasldb}\nmech_list: PLAIN LOGIN\n`,
  )
  // Who may send as whom: each login only as its own domain (reject_sender_login_mismatch).
  writeFileSync(join(conf, 'senders'), opts.users.map((u) => `@${u.domain} ${u.username}@${hostname}`).join('\n'))

  writeFileSync(
    join(conf, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${queue}`,
      `data_directory = ${data}`,
      'command_directory = /usr/sbin',
      'daemon_directory = /usr/lib/postfix/sbin',
      'meta_directory = /etc/postfix',
      'shlib_directory = /usr/lib/postfix',
      'mail_owner = postfix',
      'setgid_group = postdrop',
      `myhostname = ${hostname}`,
      'mydestination =',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'biff = no',
      'alias_maps =',
      'alias_database =',
      `maillog_file = ${join(dir, 'maillog')}`,
      `maillog_file_prefixes = ${dir}`,
      'message_size_limit = 10485760',
      // Submission: TLS before AUTH, authenticated users only, each as its own domain.
      `smtpd_tls_cert_file = ${opts.tlsCertFile}`,
      `smtpd_tls_key_file = ${opts.tlsKeyFile}`,
      'smtpd_tls_security_level = may',
      'smtpd_tls_auth_only = yes',
      'smtpd_sasl_auth_enable = yes',
      'smtpd_sasl_type = cyrus',
      'smtpd_sasl_path = smtpd',
      `cyrus_sasl_config_path = ${sasl}`,
      `smtpd_sasl_local_domain = ${hostname}`,
      `smtpd_sender_login_maps = texthash:${join(conf, 'senders')}`,
      'smtpd_sender_restrictions = reject_sender_login_mismatch',
      'smtpd_relay_restrictions = permit_sasl_authenticated, reject',
      'smtpd_recipient_restrictions = permit_sasl_authenticated, reject',
      'smtpd_client_connection_count_limit = 0',
      'smtpd_client_connection_rate_limit = 0',
      'smtpd_client_message_rate_limit = 0',
      'default_process_limit = 200',
      // Signing.
      `smtpd_milters = inet:127.0.0.1:${milterPort}`,
      'non_smtpd_milters = $smtpd_milters',
      'milter_default_action = tempfail',
      // Delivery: every recipient's MX is the loopback sink, with opportunistic TLS as to real MXs.
      `relayhost = [127.0.0.1]:${opts.sinkPort}`,
      'smtp_tls_security_level = may',
      `default_destination_concurrency_limit = ${opts.concurrency}`,
      `smtp_destination_concurrency_limit = ${opts.concurrency}`,
      'smtp_connection_cache_on_demand = yes',
      '',
    ].join('\n'),
  )
  // Debian's master.cf with chroot off (the instance's paths are outside any chroot) and the
  // submission listener on a loopback port. Columns: service type private unpriv chroot wakeup maxproc command.
  writeFileSync(
    join(conf, 'master.cf'),
    `${[
      `127.0.0.1:${port} inet n - n - - smtpd`,
      'pickup unix n - n 60 1 pickup',
      'cleanup unix n - n - 0 cleanup',
      'qmgr unix n - n 300 1 qmgr',
      'tlsmgr unix - - n 1000? 1 tlsmgr',
      'rewrite unix - - n - - trivial-rewrite',
      'bounce unix - - n - 0 bounce',
      'defer unix - - n - 0 bounce',
      'trace unix - - n - 0 bounce',
      'verify unix - - n - 1 verify',
      'flush unix n - n 1000? 0 flush',
      'proxymap unix - - n - - proxymap',
      'proxywrite unix - - n - 1 proxymap',
      'smtp unix - - n - - smtp',
      'relay unix - - n - - smtp',
      'showq unix n - n - - showq',
      'error unix - - n - - error',
      'retry unix - - n - - error',
      'discard unix - - n - - discard',
      'local unix - n n - - local',
      'anvil unix - - n - 1 anvil',
      'scache unix - - n - 1 scache',
      'postlog unix-dgram n - n - 1 postlogd',
    ].join('\n')}\n`,
  )

  const opendkim = spawn('/usr/sbin/opendkim', ['-x', join(dkim, 'opendkim.conf'), '-f'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let dkimErr = ''
  opendkim.stderr.on('data', (b: Buffer) => {
    dkimErr = (dkimErr + b.toString()).slice(-4000)
  })
  try {
    await run('/usr/sbin/postfix', ['-c', conf, 'check'])
    await run('/usr/sbin/postfix', ['-c', conf, 'start'])
    const masterPid = Number(readFileSync(join(queue, 'pid', 'master.pid'), 'utf8').trim())
    await untilListening(port, 30_000)
    await untilListening(milterPort, 30_000, () => opendkim.exitCode !== null && `opendkim exited: ${dkimErr}`)
    return {
      port,
      cpuSeconds: () => ({ postfix: instanceCpu(masterPid), opendkim: procCpu(opendkim.pid!, true) }),
      stop: async () => {
        await run('/usr/sbin/postfix', ['-c', conf, 'stop']).catch(() => {})
        opendkim.kill('SIGTERM')
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    await run('/usr/sbin/postfix', ['-c', conf, 'abort']).catch(() => {})
    opendkim.kill('SIGKILL')
    const log = (() => {
      try {
        return readFileSync(join(dir, 'maillog'), 'utf8').slice(-4000)
      } catch {
        return ''
      }
    })()
    // ATMOS_BENCH_KEEP_POSTFIX=1 keeps the instance's directory to look into.
    if (!process.env.ATMOS_BENCH_KEEP_POSTFIX) rmSync(dir, { recursive: true, force: true })
    throw new Error(
      `postfix did not start: ${(err as Error).message}\n${(err as { stderr?: string }).stderr ?? ''}\n${log}\n${dkimErr}`,
    )
  }
}

async function ids(user: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run('id', ['-u', user]), run('id', ['-g', user])])
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

async function untilListening(port: number, timeoutMs: number, failed?: () => string | false): Promise<void> {
  const { connect } = await import('node:net')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const why = failed?.()
    if (why) throw new Error(why)
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1')
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
