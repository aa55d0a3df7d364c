import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const root = fileURLToPath(new URL('../..', import.meta.url))
const composeFile = join(root, 'docker-compose.yml')
const SERVICES = ['labeler', 'relay', 'scheduler', 'fbl-ingest', 'admin', 'webhooks']

type Port = { host: string | undefined; published: number; target: number }

/** A published port in either form docker-compose 1.29 writes: `ip:published:target/tcp` or an object. */
function portOf(p: string | { host_ip?: string; published: number | string; target: number | string }): Port {
  if (typeof p !== 'string') return { host: p.host_ip, published: Number(p.published), target: Number(p.target) }
  const parts = p.split('/')[0]!.split(':')
  const [target, published, host] = parts.reverse()
  return { host, published: Number(published), target: Number(target) }
}

const ports = (svc: { ports?: Parameters<typeof portOf>[0][] }) => (svc.ports ?? []).map(portOf)

// Debian's docker-compose (1.29) validates a file without a Docker engine; the test
// command installs it. It also keeps the file to keys both Compose generations accept.
function composeConfig(file: string) {
  return spawnSync('docker-compose', ['-f', file, 'config', '-q'], { cwd: root, encoding: 'utf8' })
}

describe('docker-compose.yml', () => {
  it('is valid for docker-compose config', () => {
    const result = composeConfig(composeFile)
    assert.equal(result.error, undefined, 'docker-compose is not installed (scripts/test.sh installs it)')
    assert.equal(result.status, 0, result.stderr)
  })

  it('the validator rejects a broken file (so the test above means something)', () => {
    const broken = join(tmpdir(), `compose-broken-${process.pid}.yml`)
    writeFileSync(
      broken,
      readFileSync(composeFile, 'utf8').replace('condition: service_healthy', 'condition: when_it_feels_like_it'),
    )
    const result = composeConfig(broken)
    assert.notEqual(result.status, 0)
  })

  it('runs Postgres, Redis, a migration and the six services, each from the one Dockerfile', () => {
    const doc = parse(readFileSync(composeFile, 'utf8'))
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    assert.ok(doc.services.postgres.healthcheck && doc.services.redis.healthcheck)
    for (const name of SERVICES) {
      const svc = resolved.services[name]
      assert.ok(svc, `no service ${name}`)
      assert.equal(svc.build.dockerfile, 'Dockerfile')
      assert.equal(svc.build.args.SERVICE, name, `${name} builds with SERVICE=${name}`)
      assert.equal(svc.image, `atmos/${name}:local`)
      assert.ok(existsSync(join(svc.build.context, svc.build.dockerfile)))
      assert.equal(svc.depends_on.migrate.condition, 'service_completed_successfully')
      assert.equal(svc.depends_on.postgres.condition, 'service_healthy')
      assert.equal(svc.depends_on.redis.condition, 'service_healthy')
      assert.match(svc.environment.ATMOS_DATABASE_URL, /@postgres:5432\//)
      assert.equal(svc.environment.ATMOS_HTTP_HOST, '0.0.0.0')
    }
    assert.deepEqual(resolved.services.migrate.command, ['node', '/app/packages/db/src/bin/migrate.ts'])
    // The migration runs from the labeler's image; relay-delivery from the relay's.
    assert.equal(resolved.services.migrate.build.args.SERVICE, 'labeler')
    assert.equal(resolved.services.migrate.image, 'atmos/labeler:local')
    assert.equal(resolved.services['relay-delivery'].image, 'atmos/relay:local')
    const published = Object.values(resolved.services).flatMap((s: any) => ports(s).map((p) => p.published))
    assert.equal(new Set(published).size, published.length, 'two services publish the same port')
  })

  it('splits the relay into submission and delivery workers, sharing keys made once, with SMTP on high container ports', () => {
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    const { relay, 'relay-delivery': delivery, 'relay-init': init, 'fbl-ingest': fbl } = resolved.services
    assert.equal(relay.environment.ATMOS_RELAY_ROLES, 'submission')
    assert.equal(delivery.environment.ATMOS_RELAY_ROLES, 'delivery')
    assert.deepEqual(init.command, ['node', 'src/cli.ts', 'keys', 'init'])
    for (const svc of [relay, delivery, fbl])
      assert.equal(svc.depends_on['relay-init'].condition, 'service_completed_successfully')
    // The relay and fbl-ingest read the same token secret, from the volume relay-init wrote.
    assert.equal(
      fbl.environment.ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE,
      relay.environment.ATMOS_RELAY_POOL_TOKEN_SECRET_FILE,
    )
    // The relay's KEK, which opens every member's key, reaches relay-init and submission only.
    const volumes = (svc: { volumes?: Array<string | { source: string }> }) =>
      (svc.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':')[0] : v.source))
    assert.ok(volumes(relay).includes('relay-state') && volumes(relay).includes('pool-state'))
    for (const svc of [delivery, fbl]) {
      assert.deepEqual(volumes(svc), ['pool-state'])
    }
    assert.ok(fbl.environment.ATMOS_FBL_INGEST_POOL_KEK_FILE.startsWith('/var/lib/atmos-pool/'))
    assert.equal(fbl.environment.ATMOS_FBL_INGEST_POOL_KEK_FILE, delivery.environment.ATMOS_RELAY_POOL_KEK_FILE)
    // Their user cannot bind below 1024: 587 and 25 are published onto high container ports.
    const target = (svc: Parameters<typeof ports>[0], published: number) =>
      ports(svc).find((p) => p.published === published)?.target ?? Number.NaN
    assert.equal(target(relay, 587), Number(relay.environment.ATMOS_RELAY_SUBMISSION_PORT))
    assert.equal(target(fbl, 25), Number(fbl.environment.ATMOS_FBL_INGEST_SMTP_PORT))
    assert.ok(target(relay, 587) >= 1024 && target(fbl, 25) >= 1024)
    // The services' own defaults are loopback: a published port must name every interface.
    assert.equal(relay.environment.ATMOS_RELAY_SUBMISSION_HOST, '0.0.0.0')
    assert.equal(fbl.environment.ATMOS_FBL_INGEST_SMTP_HOST, '0.0.0.0')
  })

  it('gives the admin its own keys, the relay KEK read-only for the wizard, and the labeler’s label API', () => {
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    const { admin, relay } = resolved.services
    // docker-compose 1.29 writes `source:target:mode`; newer Compose an object.
    const mounts = (
      (admin.volumes ?? []) as Array<string | { source: string; target: string; read_only?: boolean }>
    ).map((v) => {
      if (typeof v !== 'string') return v
      const [source = '', target = '', mode] = v.split(':')
      return { source, target, read_only: mode === 'ro' }
    })
    const mountOf = (file: string) => mounts.find((m) => file.startsWith(`${m.target}/`))
    const env = admin.environment
    assert.equal(mountOf(env.ATMOS_ADMIN_KEK_FILE)?.source, 'admin-state')
    assert.equal(mountOf(env.ATMOS_ADMIN_OAUTH_KEYS_FILE)?.source, 'admin-state')
    // The relay's KEK: the same volume and file name submission reads, mounted read-only here.
    const relayKek = mountOf(env.ATMOS_ADMIN_ENROLL_KEK_FILE)
    assert.equal(relayKek?.source, 'relay-state')
    assert.equal(relayKek?.read_only, true)
    assert.equal(
      env.ATMOS_ADMIN_ENROLL_KEK_FILE.split('/').at(-1),
      relay.environment.ATMOS_RELAY_KEK_FILE.split('/').at(-1),
    )
    assert.equal(admin.depends_on['relay-init'].condition, 'service_completed_successfully')
    assert.deepEqual(admin.command, ['sh', '-c', 'node src/cli.ts oauth init && exec node src/index.ts'])
    assert.equal(new URL(env.ATMOS_ADMIN_LABELER_URL).hostname, 'labeler')
    assert.ok(
      ports(resolved.services.labeler).some((p) => p.target === Number(new URL(env.ATMOS_ADMIN_LABELER_URL).port)),
      'the labeler listens where the admin reads labels',
    )
    assert.ok(URL.canParse(env.ATMOS_ADMIN_PUBLIC_URL))
    // The relay links one-click unsubscribes to the admin's /u page.
    assert.equal(
      resolved.services.relay.environment.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL,
      `${env.ATMOS_ADMIN_PUBLIC_URL.replace(/\/$/, '')}/u`,
    )
    assert.ok('ATMOS_ADMIN_OPERATORS' in env)
  })

  it("publishes neither Postgres nor Redis, and the ops ports and the admin's plain HTTP on loopback only", () => {
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    // A host that runs its own Postgres or Redis keeps 5432 and 6379.
    assert.deepEqual(ports(resolved.services.postgres), [])
    assert.deepEqual(ports(resolved.services.redis), [])
    const everywhere = new Set([587, 25, 2583]) // submission, inbound SMTP, the public label API
    for (const [name, svc] of Object.entries(resolved.services) as [string, any][]) {
      for (const p of ports(svc)) {
        if (everywhere.has(p.published)) continue
        assert.equal(p.host, '127.0.0.1', `${name}: ${p.published} is published on every interface`)
      }
    }
    // Each service's ops port (ATMOS_HTTP_PORT) and the admin's web are among them.
    for (const name of SERVICES) {
      const ops = Number(resolved.services[name].environment.ATMOS_HTTP_PORT)
      assert.equal(ports(resolved.services[name]).find((p) => p.target === ops)?.host, '127.0.0.1', name)
    }
    assert.equal(ports(resolved.services.admin).find((p) => p.target === 3000)?.host, '127.0.0.1')
    // The send API takes bearer keys over plain HTTP: loopback only, on the submission process.
    const relay = resolved.services.relay
    assert.equal(relay.environment.ATMOS_RELAY_API_ENABLED, 'true')
    assert.equal(
      ports(relay).find((p) => p.target === Number(relay.environment.ATMOS_RELAY_API_PORT))?.host,
      '127.0.0.1',
    )
  })

  it('relay-cert runs after relay-init as its user, so the shared volume never turns root-owned', () => {
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    const { 'relay-cert': cert, 'relay-init': init } = resolved.services
    // relay-init (user node, uid 1000, in the services' image) creates the volume from the
    // image's node-owned directory; relay-cert writes into it afterwards as the same uid.
    assert.equal(cert.depends_on['relay-init'].condition, 'service_completed_successfully')
    assert.equal(String(cert.user).split(':')[0], '1000')
    assert.ok(!String(cert.command).includes('chown'), 'no chown needed (nor possible) as uid 1000')
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
    assert.match(dockerfile, /^USER node$/m)
    assert.match(dockerfile, /chown node:node \/var\/lib\/atmos /)
    const volumeAt = (svc: { volumes: string[] }, target: string) =>
      svc.volumes.find((v) => v.split(':')[1] === target)?.split(':')[0]
    assert.equal(volumeAt(cert, '/var/lib/atmos'), volumeAt(init, '/var/lib/atmos'))
    // Everything that reads the certificate waits for it.
    assert.equal(resolved.services.relay.depends_on['relay-cert'].condition, 'service_completed_successfully')
  })
})
