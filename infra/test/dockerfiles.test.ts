import assert from 'node:assert/strict'
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const SERVICES = ['labeler', 'relay', 'scheduler', 'fbl-ingest', 'admin', 'webhooks']
const toolchain = readFileSync(join(root, 'scripts/toolchain.sh'), 'utf8')
const nodeVersion = /ATMOS_NODE_VERSION="([^"]+)"/.exec(toolchain)?.[1]
const pnpmVersion = /ATMOS_PNPM_VERSION="([^"]+)"/.exec(toolchain)?.[1]
const dockerignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').filter(Boolean)
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')

type Instruction = { op: string; args: string }

/** Dockerfile instructions with line continuations joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/)
      return { op: op!.toUpperCase(), args: rest.join(' ') }
    })
}

/** The instructions as `docker build --build-arg SERVICE=<name>` sees them. */
function stepsFor(service: string): Instruction[] {
  return parseDockerfile(dockerfile).map((s) => ({
    op: s.op,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own build-argument reference
    args: s.args.replaceAll('${SERVICE}', service),
  }))
}

/** The ops port a service listens on by default (its config schema's httpPort). */
function defaultHttpPort(service: string): number {
  const source = readFileSync(join(root, 'services', service, 'src', 'config.ts'), 'utf8')
  const m = /serviceConfigSchema\('[A-Za-z]+', \{ httpPort: (\d+)/.exec(source)
  assert.ok(m, `${service}: no httpPort in src/config.ts`)
  return Number(m[1])
}

describe('Dockerfile (one for the six services)', () => {
  it('is the only Dockerfile: the services have none of their own', () => {
    for (const name of SERVICES)
      assert.throws(() => readFileSync(join(root, 'services', name, 'Dockerfile')), /ENOENT/, `services/${name}`)
  })

  it('declares SERVICE in both stages and refuses a name that is not a service', () => {
    const steps = parseDockerfile(dockerfile)
    const froms = steps.flatMap((s, i) => (s.op === 'FROM' ? [i] : []))
    assert.ok(froms.length >= 2, 'multi-stage')
    for (const [n, start] of froms.entries()) {
      const stage = steps.slice(start, froms[n + 1])
      assert.ok(
        stage.some((s) => s.op === 'ARG' && s.args === 'SERVICE'),
        `stage ${n + 1} declares ARG SERVICE`,
      )
    }
    // The guard's case statement, run by sh as the build would: the six pass, anything else fails.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own build-argument reference
    const guard = steps.find((s) => s.op === 'RUN' && s.args.startsWith('case "${SERVICE}"'))
    assert.ok(guard, 'no guard on SERVICE')
    for (const name of SERVICES)
      assert.equal(
        spawnSync('sh', ['-c', guard.args], { env: { PATH: process.env.PATH, SERVICE: name } }).status,
        0,
        name,
      )
    for (const name of ['', 'postgres', 'relay-delivery', '../relay'])
      assert.notEqual(
        spawnSync('sh', ['-c', guard.args], { env: { PATH: process.env.PATH, SERVICE: name } }).status,
        0,
        `'${name}'`,
      )
  })

  it("the health check's ports are the services' own defaults", () => {
    const check = parseDockerfile(dockerfile).find((s) => s.op === 'HEALTHCHECK')?.args ?? ''
    for (const name of SERVICES) {
      const port = defaultHttpPort(name)
      const key = name.includes('-') ? `'${name}'` : name
      assert.ok(check.includes(`${key}: ${port}`), `${name}: ${port} in the health check`)
    }
  })

  it('the health check succeeds on a healthy /healthz and fails on an unhealthy or absent one', async () => {
    const check = parseDockerfile(dockerfile).find((s) => s.op === 'HEALTHCHECK')?.args ?? ''
    const [command, flag, script] = JSON.parse(check.slice(check.indexOf('CMD ') + 4)) as string[]
    assert.deepEqual([command, flag], ['node', '-e'])
    let status = 200
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/healthz' ? status : 404
      res.end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    /** The check's exit code as Docker would see it, with the service's environment. */
    const run = (env: Record<string, string>) =>
      new Promise<number>((resolve) => {
        execFile(process.execPath, ['-e', script!], { env: { PATH: process.env.PATH, ...env } }, (err) =>
          resolve(err ? Number(err.code) : 0),
        )
      })
    try {
      assert.equal(await run({ ATMOS_SERVICE: 'relay', ATMOS_HTTP_PORT: String(port) }), 0)
      status = 503
      assert.equal(await run({ ATMOS_SERVICE: 'relay', ATMOS_HTTP_PORT: String(port) }), 1)
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
    assert.equal(await run({ ATMOS_SERVICE: 'relay', ATMOS_HTTP_PORT: String(port) }), 1, 'nothing listening')
  })

  for (const name of SERVICES) {
    const steps = stepsFor(name)

    it(`${name}: multi-stage, pinned Node and pnpm, non-root, runs its own entry point`, () => {
      const arg = steps.find((s) => s.op === 'ARG' && s.args.startsWith('NODE_IMAGE='))
      assert.equal(arg?.args, `NODE_IMAGE=node:${nodeVersion}-bookworm-slim`, 'same Node as scripts/toolchain.sh')
      assert.ok(
        steps.some((s) => s.op === 'RUN' && s.args.includes(`pnpm@${pnpmVersion}`)),
        'same pnpm as the toolchain',
      )
      assert.ok(steps.some((s) => s.op === 'RUN' && s.args.includes(`--frozen-lockfile`)))
      assert.ok(steps.some((s) => s.op === 'RUN' && s.args.includes(`--filter "@atmos/${name}..."`)))
      const finalStage = steps.slice(steps.map((s) => s.op).lastIndexOf('FROM'))
      const user = finalStage.find((s) => s.op === 'USER')?.args
      assert.ok(user && user !== 'root' && user !== '0', 'the runtime stage drops root')
      assert.equal(
        finalStage.find((s) => s.op === 'WORKDIR' && s.args.includes('services'))?.args,
        `/app/services/${name}`,
      )
      assert.equal(finalStage.find((s) => s.op === 'CMD')?.args, '["node", "src/index.ts"]')
      assert.ok(finalStage.some((s) => s.op === 'HEALTHCHECK' && s.args.includes('/healthz')))
    })

    // Replays the build stage without Docker: the files its COPY lines bring (less what
    // .dockerignore leaves out), the same offline, frozen, production-only install, and
    // then the entry point, which must load every module and stop at the config check.
    it(`${name}: the build stage's install yields a runnable service`, () => {
      const ctx = mkdtempSync(join(tmpdir(), `atmos-image-${name}-`))
      try {
        const ignored = (src: string) =>
          /(^|\/)(node_modules|test)(\/|$)/.test(src.slice(root.length)) ||
          dockerignore.some((p) => !p.startsWith('!') && src.slice(root.length + 1) === p)
        for (const step of steps.filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))) {
          const parts = step.args.split(/\s+/)
          const sources = parts.slice(0, -1)
          const dest = parts.at(-1)!
          for (const src of sources) {
            const target = dest === './' ? join(ctx, src) : join(ctx, dest)
            cpSync(join(root, src), target, { recursive: true, filter: (s) => !ignored(s) })
          }
        }
        const install = steps
          .filter((s) => s.op === 'RUN')
          .map((s) => s.args)
          .find((a) => a.startsWith('pnpm install'))!
        execFileSync('bash', ['-c', install], { cwd: ctx, stdio: 'pipe' })
        // Only this service's sources are in the image.
        assert.deepEqual(readdirSync(join(ctx, 'services')), [name])
        // Our patches are applied in the image as in development (pnpm-workspace.yaml).
        const mailauth = join(ctx, 'node_modules', '.pnpm')
        for (const dir of readdirSync(mailauth).filter((d) => d.startsWith('mailauth@'))) {
          const tools = readFileSync(join(mailauth, dir, 'node_modules', 'mailauth', 'lib', 'tools.js'), 'utf8')
          assert.ok(tools.includes('instanceof crypto.KeyObject'), `${dir} is installed without our patch`)
        }
        const run = spawnSync(process.execPath, ['src/index.ts'], {
          cwd: join(ctx, 'services', name),
          env: { PATH: process.env.PATH, ATMOS_HTTP_PORT: 'not-a-port' },
          encoding: 'utf8',
        })
        assert.equal(run.status, 2, run.stderr)
        assert.match(run.stderr, /invalid configuration:\n {2}http\.port \(from ATMOS_HTTP_PORT\)/)
      } finally {
        rmSync(ctx, { recursive: true, force: true })
      }
    })
  }
})
