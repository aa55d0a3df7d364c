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
const SERVICES = ['labeler', 'relay', 'scheduler', 'fbl-ingest', 'admin']

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

  it('runs Postgres, Redis, a migration and the five services, each from its own Dockerfile', () => {
    const doc = parse(readFileSync(composeFile, 'utf8'))
    const resolved = parse(
      execFileSync('docker-compose', ['-f', composeFile, 'config'], { cwd: root, encoding: 'utf8' }),
    )
    assert.ok(doc.services.postgres.healthcheck && doc.services.redis.healthcheck)
    for (const name of SERVICES) {
      const svc = resolved.services[name]
      assert.ok(svc, `no service ${name}`)
      assert.equal(svc.build.dockerfile, `services/${name}/Dockerfile`)
      assert.ok(existsSync(join(root, svc.build.dockerfile)))
      assert.equal(svc.depends_on.migrate.condition, 'service_completed_successfully')
      assert.equal(svc.depends_on.postgres.condition, 'service_healthy')
      assert.equal(svc.depends_on.redis.condition, 'service_healthy')
      assert.match(svc.environment.ATMOS_DATABASE_URL, /@postgres:5432\//)
      assert.equal(svc.environment.ATMOS_HTTP_HOST, '0.0.0.0')
    }
    assert.deepEqual(resolved.services.migrate.command, ['node', '/app/packages/db/src/bin/migrate.ts'])
    const published = Object.values(resolved.services).flatMap((s: any) =>
      (s.ports ?? []).map((p: any) => (typeof p === 'string' ? p.split(':').at(-2) : String(p.published))),
    )
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
    const target = (
      svc: { ports: Array<{ published: number | string; target: number | string }> },
      published: number,
    ) => Number(svc.ports.find((p) => Number(p.published) === published)?.target)
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
      resolved.services.labeler.ports.some(
        (p: { target: number | string }) => Number(p.target) === Number(new URL(env.ATMOS_ADMIN_LABELER_URL).port),
      ),
      'the labeler listens where the admin reads labels',
    )
    assert.ok(URL.canParse(env.ATMOS_ADMIN_PUBLIC_URL))
    assert.ok('ATMOS_ADMIN_OPERATORS' in env)
  })
})
