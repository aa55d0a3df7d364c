import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { Job } from 'kubernetes-models/batch/v1/Job'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Service } from 'kubernetes-models/v1/Service'
import { parseAllDocuments } from 'yaml'

// kubernetes-models checks each object against the Kubernetes OpenAPI schemas, which
// allow unknown keys; the checks below add what matters to us and the schemas cannot say.

const k8s = fileURLToPath(new URL('../k8s', import.meta.url))
const SERVICES = ['labeler', 'relay', 'scheduler', 'fbl-ingest', 'admin']

type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any }

const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'batch/v1/Job': Job,
}

function loadYaml(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((doc) => {
    assert.deepEqual(doc.errors, [], `${file}: ${doc.errors.join('; ')}`)
    return doc.toJS() as Obj
  })
}

/** The resources a kustomization lists, followed into bases, with the files checked to exist. */
function kustomize(dir: string): { objects: Obj[]; patches: Obj[] } {
  const kustomization = loadYaml(join(dir, 'kustomization.yaml'))[0] as unknown as {
    resources?: string[]
    patches?: { path: string }[]
  }
  const objects: Obj[] = []
  const patches: Obj[] = []
  for (const resource of kustomization.resources ?? []) {
    const path = join(dir, resource)
    assert.ok(existsSync(path), `${dir}: resource ${resource} does not exist`)
    if (existsSync(join(path, 'kustomization.yaml'))) {
      const nested = kustomize(path)
      objects.push(...nested.objects)
      patches.push(...nested.patches)
    } else objects.push(...loadYaml(path))
  }
  for (const patch of kustomization.patches ?? []) {
    const path = join(dir, patch.path)
    assert.ok(existsSync(path), `${dir}: patch ${patch.path} does not exist`)
    patches.push(...loadYaml(path))
  }
  return { objects, patches }
}

const base = kustomize(join(k8s, 'base'))

/** How long /readyz waits for one check (packages/runtime's CHECK_TIMEOUT_MS), read from the code that uses it. */
const CHECK_TIMEOUT_MS = (() => {
  const source = readFileSync(new URL('../../packages/runtime/src/connections.ts', import.meta.url), 'utf8')
  const m = /export const CHECK_TIMEOUT_MS = ([\d_]+)/.exec(source)
  assert.ok(m, 'CHECK_TIMEOUT_MS not found in packages/runtime/src/connections.ts')
  return Number(m[1]!.replaceAll('_', ''))
})()
const deployments = base.objects.filter((o) => o.kind === 'Deployment')

describe('kubernetes manifests', () => {
  it('validate against the Kubernetes object schemas', () => {
    for (const obj of base.objects) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`]
      assert.ok(Model, `no schema check for ${obj.apiVersion} ${obj.kind}`)
      new Model(obj).validate()
    }
  })

  it('the schema check catches a broken object (so the test above means something)', () => {
    const broken = structuredClone(deployments[0]!)
    broken.spec.replicas = 'two'
    assert.throws(() => new Deployment(broken).validate(), /replicas/)
  })

  it('have a Deployment and a Service for each of the five services, and a migration Job', () => {
    for (const name of SERVICES) {
      assert.ok(
        deployments.some((d) => d.metadata.name === name),
        `no Deployment ${name}`,
      )
      assert.ok(
        base.objects.some((o) => o.kind === 'Service' && o.metadata.name === name),
        `no Service ${name}`,
      )
    }
    const job = base.objects.find((o) => o.kind === 'Job')
    assert.deepEqual(job?.spec.template.spec.containers[0].command, ['node', '/app/packages/db/src/bin/migrate.ts'])
  })

  for (const name of [...SERVICES, 'relay-delivery']) {
    it(`${name}: probes on /healthz and /readyz, resource requests, non-root, selector matching its pods`, () => {
      const d = deployments.find((x) => x.metadata.name === name)!
      const pod = d.spec.template.spec
      assert.deepEqual(d.spec.selector.matchLabels, { 'app.kubernetes.io/name': name })
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels))
        assert.equal(d.spec.template.metadata.labels[k], v)
      assert.equal(pod.securityContext.runAsNonRoot, true)
      assert.ok(pod.securityContext.runAsUser > 0)
      for (const c of pod.containers) {
        assert.equal(c.livenessProbe.httpGet.path, '/healthz')
        assert.equal(c.readinessProbe.httpGet.path, '/readyz')
        const portNames = c.ports.map((p: { name: string }) => p.name)
        assert.ok(portNames.includes(c.livenessProbe.httpGet.port), 'liveness probe names a port the container has')
        assert.ok(portNames.includes(c.readinessProbe.httpGet.port))
        assert.ok(c.resources.requests.cpu && c.resources.requests.memory, 'cpu and memory requests')
        assert.equal(c.securityContext.allowPrivilegeEscalation, false)
        assert.equal(c.securityContext.readOnlyRootFilesystem, true)
        const opsPort = c.ports.find((p: { name: string }) => p.name === 'ops').containerPort
        assert.equal(c.env.find((e: { name: string }) => e.name === 'ATMOS_HTTP_PORT').value, String(opsPort))
        assert.deepEqual(
          c.envFrom.map((e: Record<string, { name: string }>) => Object.values(e)[0]!.name),
          ['atmos-config', 'atmos-secrets'],
        )
      }
      // Secret volumes are root-owned: a non-root pod reads them through its group (fsGroup, 0440).
      for (const v of pod.volumes ?? []) {
        if (!v.secret) continue
        assert.equal(pod.securityContext.fsGroup, pod.securityContext.runAsGroup, `${name}: fsGroup for ${v.name}`)
        assert.equal(v.secret.defaultMode, 0o440, `${name}: ${v.name} mode 0440`)
      }
      // Non-root processes cannot bind ports below 1024; Services map 25 and 587 onto high ones.
      for (const c of pod.containers)
        for (const p of c.ports) assert.ok(p.containerPort >= 1024, `${name}: container port ${p.containerPort}`)
      const svc = base.objects.find((o) => o.kind === 'Service' && o.metadata.name === name)
      if (!svc) return
      for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(d.spec.template.metadata.labels[k], v)
      const containerPorts = pod.containers.flatMap((c: { ports: { name: string }[] }) => c.ports.map((p) => p.name))
      for (const p of svc.spec.ports)
        assert.ok(containerPorts.includes(p.targetPort), `${name}: targetPort ${p.targetPort}`)
    })
  }

  it("give every probe a timeout longer than the ops endpoint's own check timeout", () => {
    const probes = [...base.objects, ...kustomize(join(k8s, 'overlays', 'production')).patches]
      .filter((o) => o.kind === 'Deployment')
      .flatMap((d) =>
        (d.spec?.template?.spec?.containers ?? []).flatMap((c: Record<string, { timeoutSeconds?: number }>) =>
          ['livenessProbe', 'readinessProbe', 'startupProbe']
            .filter((kind) => c[kind])
            .map((kind) => ({ where: `${d.metadata.name} ${kind}`, timeoutSeconds: c[kind]!.timeoutSeconds })),
        ),
      )
    assert.ok(probes.length >= 18, `only ${probes.length} probes found`)
    for (const p of probes) {
      // Kubernetes' default is 1 s: a /readyz waiting on a slow Redis would count as failed.
      assert.ok(p.timeoutSeconds !== undefined, `${p.where}: no timeoutSeconds`)
      assert.ok(
        p.timeoutSeconds * 1000 > CHECK_TIMEOUT_MS,
        `${p.where}: ${p.timeoutSeconds} s <= ${CHECK_TIMEOUT_MS} ms`,
      )
    }
  })

  it('expose SMTP as TCP: relay on 587 and fbl-ingest on 25', () => {
    const port = (svc: string, name: string) =>
      base.objects
        .find((o) => o.kind === 'Service' && o.metadata.name === svc)!
        .spec.ports.find((p: { name: string }) => p.name === name)
    assert.deepEqual([port('relay', 'submission').port, port('relay', 'submission').protocol], [587, 'TCP'])
    assert.deepEqual([port('fbl-ingest', 'smtp').port, port('fbl-ingest', 'smtp').protocol], [25, 'TCP'])
    // Each listens where its Service sends it, on every interface (the services' defaults are
    // loopback and unprivileged, 127.0.0.1:2587-style, for a start by hand).
    const container = (d: string) => deployments.find((x) => x.metadata.name === d)!.spec.template.spec.containers[0]
    const env = (d: string) =>
      Object.fromEntries(container(d).env.map((e: { name: string; value: string }) => [e.name, e.value]))
    const containerPort = (d: string, name: string) =>
      container(d).ports.find((p: { name: string }) => p.name === name).containerPort
    assert.equal(port('fbl-ingest', 'smtp').targetPort, 'smtp')
    assert.equal(Number(env('fbl-ingest').ATMOS_FBL_INGEST_SMTP_PORT), containerPort('fbl-ingest', 'smtp'))
    assert.equal(env('fbl-ingest').ATMOS_FBL_INGEST_SMTP_HOST, '0.0.0.0')
    assert.equal(Number(env('relay').ATMOS_RELAY_SUBMISSION_PORT), containerPort('relay', 'submission'))
    assert.equal(env('relay').ATMOS_RELAY_SUBMISSION_HOST, '0.0.0.0')
  })

  it('run relay delivery as its own Deployment, and give submission its keys, token and certificate', () => {
    const env = (d: string) =>
      Object.fromEntries(
        deployments
          .find((x) => x.metadata.name === d)!
          .spec.template.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
      )
    assert.equal(env('relay').ATMOS_RELAY_ROLES, 'submission')
    assert.equal(env('relay-delivery').ATMOS_RELAY_ROLES, 'delivery')
    const mounted = (d: string) =>
      deployments
        .find((x) => x.metadata.name === d)!
        .spec.template.spec.containers[0].volumeMounts.map((m: { mountPath: string }) => m.mountPath)
    for (const key of [
      'ATMOS_RELAY_KEK_FILE',
      'ATMOS_RELAY_POOL_TOKEN_SECRET_FILE',
      'ATMOS_RELAY_SUBMISSION_TLS_CERT_FILE',
      'ATMOS_RELAY_SUBMISSION_TLS_KEY_FILE',
    ])
      assert.ok(
        mounted('relay').some((m: string) => env('relay')[key].startsWith(`${m}/`)),
        `${key} lies in a mounted Secret`,
      )
    assert.ok(
      mounted('fbl-ingest').some((m: string) =>
        env('fbl-ingest').ATMOS_FBL_INGEST_POOL_TOKEN_SECRET_FILE.startsWith(`${m}/`),
      ),
    )
  })

  it('give the relay KEK (every member key) to submission only; fbl-ingest and delivery get the pool KEK', () => {
    const spec = (d: string) => deployments.find((x) => x.metadata.name === d)!.spec.template.spec
    const secrets = (d: string) =>
      (spec(d).volumes ?? [])
        .filter((v: { secret?: unknown }) => v.secret)
        .map((v: { secret: { secretName: string } }) => v.secret.secretName)
    const env = (d: string) =>
      Object.fromEntries(spec(d).containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]))
    const mounted = (d: string) => spec(d).containers[0].volumeMounts.map((m: { mountPath: string }) => m.mountPath)
    assert.ok(secrets('relay').includes('atmos-relay-keys') && secrets('relay').includes('atmos-pool-keys'))
    for (const d of ['relay-delivery', 'fbl-ingest']) {
      assert.ok(!secrets(d).includes('atmos-relay-keys'), `${d} holds no relay KEK`)
      assert.ok(secrets(d).includes('atmos-pool-keys'), `${d} holds the pool KEK`)
    }
    for (const [d, key] of [
      ['relay', 'ATMOS_RELAY_POOL_KEK_FILE'],
      ['relay-delivery', 'ATMOS_RELAY_POOL_KEK_FILE'],
      ['fbl-ingest', 'ATMOS_FBL_INGEST_POOL_KEK_FILE'],
    ] as const) {
      assert.ok(
        mounted(d).some((m: string) => String(env(d)[key]).startsWith(`${m}/`)),
        `${d}: ${key} lies in a mounted Secret`,
      )
    }
  })

  it('give the admin its keys, the relay KEK read-only for the wizard, its public URL and the labeler', () => {
    const spec = deployments.find((x) => x.metadata.name === 'admin')!.spec.template.spec
    const c = spec.containers[0]
    const env = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]))
    /** The Secret behind the read-only mount a file lies in. */
    const secretOf = (file: string) => {
      const mount = c.volumeMounts.find((m: { mountPath: string }) => file.startsWith(`${m.mountPath}/`))
      assert.ok(mount, `${file} lies in no mount`)
      assert.equal(mount.readOnly, true, `${mount.mountPath} is read-only`)
      return spec.volumes.find((v: { name: string }) => v.name === mount.name)?.secret?.secretName
    }
    assert.equal(secretOf(env.ATMOS_ADMIN_KEK_FILE), 'atmos-admin-keys')
    assert.equal(secretOf(env.ATMOS_ADMIN_OAUTH_KEYS_FILE), 'atmos-admin-keys')
    // The wizard seals members' DKIM keys under the relay's KEK: the very file submission opens them with.
    assert.equal(secretOf(env.ATMOS_ADMIN_ENROLL_KEK_FILE), 'atmos-relay-keys')
    const relay = deployments.find((x) => x.metadata.name === 'relay')!.spec.template.spec
    const relayKek = relay.containers[0].env.find((e: { name: string }) => e.name === 'ATMOS_RELAY_KEK_FILE').value
    assert.equal(env.ATMOS_ADMIN_ENROLL_KEK_FILE.split('/').at(-1), relayKek.split('/').at(-1), 'the same key in it')
    // The labeler's label API, through its Service.
    const labelerUrl = new URL(env.ATMOS_ADMIN_LABELER_URL)
    const labelerSvc = base.objects.find((o) => o.kind === 'Service' && o.metadata.name === 'labeler')!
    assert.equal(labelerUrl.hostname, 'labeler')
    assert.equal(Number(labelerUrl.port), labelerSvc.spec.ports.find((p: { name: string }) => p.name === 'xrpc').port)
    // Pool-wide settings in the ConfigMap: an https public URL (a confidential OAuth client) and the operators.
    const config = base.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'atmos-config') as Obj & {
      data: Record<string, string>
    }
    assert.equal(new URL(config.data.ATMOS_ADMIN_PUBLIC_URL!).protocol, 'https:')
    assert.ok('ATMOS_ADMIN_OPERATORS' in config.data, 'the operators allowlist is there to fill in')
  })

  it('the production overlay builds on the base and patches only objects that exist', () => {
    const prod = kustomize(join(k8s, 'overlays/production'))
    assert.equal(prod.objects.length, base.objects.length)
    for (const patch of prod.patches) {
      assert.ok(
        prod.objects.some((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name),
        `patch targets missing ${patch.kind}/${patch.metadata.name}`,
      )
    }
    const overlay = loadYaml(join(k8s, 'overlays/production/kustomization.yaml'))[0] as unknown as {
      images: { name: string }[]
      replicas: { name: string }[]
    }
    const images = new Set(
      deployments.flatMap((d) => d.spec.template.spec.containers.map((c: { image: string }) => c.image.split(':')[0])),
    )
    for (const i of overlay.images) assert.ok(images.has(i.name), `image ${i.name} is used by no Deployment`)
    for (const r of overlay.replicas)
      assert.ok(
        deployments.some((d) => d.metadata.name === r.name),
        `replicas for ${r.name}`,
      )
    assert.ok(dirname(k8s))
  })
})
