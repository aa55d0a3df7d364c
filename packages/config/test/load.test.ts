import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { z } from 'zod'
import {
  ConfigError,
  envNameFor,
  field,
  loadConfig,
  parseDuration,
  section,
  serviceConfigSchema,
} from '../src/index.ts'

const schema = serviceConfigSchema('relay', {
  httpPort: 8102,
  own: section({
    submissionPort: field.port(587),
    poolDomain: field.string('pool.example'),
    requireTls: field.bool(true),
    warmingDays: field.int(14, { min: 0, max: 365 }),
    retryAfter: field.duration('2m'),
    localDomains: field.list(['postmaster', 'abuse']),
  }),
})

function tempFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'atmos-config-'))
  const file = join(dir, 'config.jsonc')
  writeFileSync(file, text)
  return file
}

describe('loadConfig', () => {
  it('loads defaults that work on this machine with no file and no environment', () => {
    const config = loadConfig(schema, { env: {} })
    assert.equal(config.database.url, 'postgres://root@127.0.0.1:5432/atmos')
    assert.equal(config.redis.url, 'redis://127.0.0.1:6379/0')
    assert.equal(config.redis.prefix, 'atmos')
    assert.equal(config.http.port, 8102)
    assert.equal(config.log.level, 'info')
    assert.equal(config.shutdownTimeout, 9000)
    assert.deepEqual(config.relay, {
      submissionPort: 587,
      poolDomain: 'pool.example',
      requireTls: true,
      warmingDays: 14,
      retryAfter: 120_000,
      localDomains: ['postmaster', 'abuse'],
    })
  })

  it('derives environment variable names from the field path', () => {
    assert.equal(envNameFor(['relay', 'submissionPort']), 'ATMOS_RELAY_SUBMISSION_PORT')
    assert.equal(envNameFor(['database', 'url']), 'ATMOS_DATABASE_URL')
    assert.equal(envNameFor(['fblIngest', 'maxSize']), 'ATMOS_FBL_INGEST_MAX_SIZE')
  })

  it('reads the environment, coercing numbers, booleans, durations and lists', () => {
    const config = loadConfig(schema, {
      env: {
        ATMOS_HTTP_PORT: '9000',
        ATMOS_RELAY_REQUIRE_TLS: 'false',
        ATMOS_RELAY_RETRY_AFTER: '90s',
        ATMOS_RELAY_LOCAL_DOMAINS: 'a, b,c',
        ATMOS_DATABASE_URL: 'postgres://u:p@db:5432/x',
      },
    })
    assert.equal(config.http.port, 9000)
    assert.equal(config.relay.requireTls, false)
    assert.equal(config.relay.retryAfter, 90_000)
    assert.deepEqual(config.relay.localDomains, ['a', 'b', 'c'])
    assert.equal(config.database.url, 'postgres://u:p@db:5432/x')
  })

  it('parses a config file with comments and trailing commas; the environment wins over it', () => {
    const file = tempFile(`{
      // the shared pool's own domain
      "relay": {
        "poolDomain": "relay.atmos.email", /* block comment */
        "warmingDays": 7,
      },
      "http": { "port": 8200, },
    }`)
    const config = loadConfig(schema, { env: { ATMOS_CONFIG: file, ATMOS_HTTP_PORT: '8300' } })
    assert.equal(config.relay.poolDomain, 'relay.atmos.email')
    assert.equal(config.relay.warmingDays, 7)
    assert.equal(config.relay.submissionPort, 587)
    assert.equal(config.http.port, 8300)
  })

  it('fails with a message naming the field and where the bad value came from', () => {
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_HTTP_PORT: '70000' } }),
      (err: Error) =>
        err instanceof ConfigError &&
        /http\.port \(from ATMOS_HTTP_PORT\): Too big: expected number to be <=65535/.test(err.message),
    )
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_RELAY_REQUIRE_TLS: 'maybe' } }),
      /relay\.requireTls \(from ATMOS_RELAY_REQUIRE_TLS\)/,
    )
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_RELAY_RETRY_AFTER: 'soon' } }),
      /relay\.retryAfter .*duration/,
    )
    assert.throws(() => loadConfig(schema, { env: { ATMOS_LOG_LEVEL: 'loud' } }), /log\.level/)
    assert.throws(() => loadConfig(schema, { env: { ATMOS_DATABASE_URL: 'mysql://x' } }), /database\.url .*postgres/)
    assert.throws(() => loadConfig(schema, { env: { ATMOS_REDIS_PREFIX: 'a:b' } }), /redis\.prefix/)
    const file = tempFile('{ "relay": { "warmingDays": -1, "unknownKey": 1 } }')
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_CONFIG: file } }),
      (err: Error) =>
        err.message.includes(`relay.warmingDays (in ${file})`) && err.message.includes('relay.unknownKey'),
    )
  })

  it('reports a malformed or missing config file with its position', () => {
    const file = tempFile('{\n  "http": { "port": 1 \n}')
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_CONFIG: file } }),
      /not valid JSON with comments: .* at \d+:\d+/,
    )
    assert.throws(
      () => loadConfig(schema, { env: { ATMOS_CONFIG: '/nonexistent/x.jsonc' } }),
      /cannot read config file/,
    )
    assert.throws(() => loadConfig(schema, { env: { ATMOS_CONFIG: tempFile('[1,2]') } }), /object at the top level/)
  })

  it('parses durations', () => {
    assert.equal(parseDuration('250ms'), 250)
    assert.equal(parseDuration('1.5s'), 1500)
    assert.equal(parseDuration('24h'), 86_400_000)
    assert.equal(parseDuration('14d'), 14 * 86_400_000)
    assert.equal(parseDuration('100'), 100)
    assert.ok(Number.isNaN(parseDuration('forever')))
  })

  it('works with any object schema, not only service configs', () => {
    const tiny = z.object({ a: section({ b: field.int(1) }) })
    assert.deepEqual(loadConfig(tiny, { env: { ATMOS_A_B: '5' } }), { a: { b: 5 } })
  })
})

describe('field.publicHttpsUrl', () => {
  const links = serviceConfigSchema('relay', {
    httpPort: 8102,
    own: section({ unsubscribeUrl: field.publicHttpsUrl('http://127.0.0.1:3000/u') }),
  })
  const load = (value: string) => loadConfig(links, { env: { ATMOS_RELAY_UNSUBSCRIBE_URL: value } }).relay

  it('takes https anywhere, and http only on a loopback host', () => {
    assert.equal(load('https://admin.pool.example/u').unsubscribeUrl, 'https://admin.pool.example/u')
    for (const local of [
      'http://127.0.0.1:3100/u',
      'http://localhost/u',
      'http://mail.localhost/u',
      'http://[::1]:3000/u',
    ]) {
      assert.equal(load(local).unsubscribeUrl, local)
    }
  })

  it('refuses plain http to a host off the machine, and other schemes, naming the variable', () => {
    for (const bad of [
      'http://admin.pool.example/u',
      'http://127.0.0.1.nip.io/u',
      'http://10.0.0.1/u',
      'ftp://x/u',
      'u',
    ]) {
      assert.throws(
        () => load(bad),
        (err: unknown) => err instanceof ConfigError && /ATMOS_RELAY_UNSUBSCRIBE_URL/.test(err.message),
        bad,
      )
    }
  })
})
