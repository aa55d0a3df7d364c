import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler'
import { Job } from 'kubernetes-models/batch/v1/Job'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Service } from 'kubernetes-models/v1/Service'
import { parseAllDocuments } from 'yaml'

// kubernetes-models checks each object against the Kubernetes OpenAPI schemas, which
// allow unknown keys; the checks below add what matters to us and the schemas cannot say.

const k8s = fileURLToPath(new URL('../k8s', import.meta.url))
const SERVICES = ['labeler', 'relay', 'scheduler', 'fbl-ingest', 'admin', 'webhooks']

type Obj = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any }

const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'batch/v1/Job': Job,
  'v1/Namespace': Namespace,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
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

  it('have a Deployment and a Service for each of the six services, and a migration Job', () => {
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

  it('serve the HTTP send API from the submission pods, inside the cluster only (an Ingress brings TLS)', () => {
    const container = deployments.find((x) => x.metadata.name === 'relay')!.spec.template.spec.containers[0]
    const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]))
    assert.equal(env.ATMOS_RELAY_API_ENABLED, 'true')
    assert.equal(env.ATMOS_RELAY_API_HOST, '0.0.0.0')
    const api = container.ports.find((p: { name: string }) => p.name === 'api')
    assert.equal(Number(env.ATMOS_RELAY_API_PORT), api.containerPort)
    const svc = base.objects.find((o) => o.kind === 'Service' && o.metadata.name === 'relay-api')!
    assert.equal(svc.spec.type, 'ClusterIP', 'bearer keys never cross the network in clear')
    assert.equal(svc.spec.ports[0].targetPort, 'api')
    const publicSvc = base.objects.find((o) => o.kind === 'Service' && o.metadata.name === 'relay')!
    assert.ok(!publicSvc.spec.ports.some((p: { name: string }) => p.name === 'api'), 'not on the LoadBalancer')
    const policy = base.objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'relay')!
    assert.ok(
      policy.spec.ingress.some((r: { ports: { port: string }[] }) => r.ports.some((p) => p.port === 'api')),
      'the network policy lets the Ingress controller reach it',
    )
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
    // The relay links one-click unsubscribes to the admin's /u page, at the same public URL.
    assert.equal(
      config.data.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL,
      `${config.data.ATMOS_ADMIN_PUBLIC_URL!.replace(/\/$/, '')}/u`,
    )
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

  it('put everything in one namespace, which a manifest creates', () => {
    const namespaces = base.objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name)
    assert.deepEqual(namespaces, [NAMESPACE])
    for (const dir of ['base', 'overlays/production']) {
      const k = loadYaml(join(k8s, dir, 'kustomization.yaml'))[0] as unknown as { namespace?: string }
      assert.equal(k.namespace, NAMESPACE, `${dir}: namespace`)
    }
  })

  it("the runbook's kubectl commands name the namespace, and create every Secret the manifests mount", () => {
    const commands = kubectlCommands(readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8'))
    assert.ok(commands.length >= 8, `only ${commands.length} kubectl commands in docs/operations.md`)
    for (const c of commands)
      assert.ok(
        c.includes(` -n ${NAMESPACE}`) ||
          c.includes(` --namespace ${NAMESPACE}`) ||
          c.includes(` --namespace=${NAMESPACE}`),
        `no -n ${NAMESPACE}: ${c}`,
      )
    const created = new Set(
      commands.flatMap((c) => /^kubectl create secret (?:generic|tls) ([a-z0-9-]+)/.exec(c)?.slice(1) ?? []),
    )
    const mounted = new Set([
      ...deployments.flatMap((d) =>
        (d.spec.template.spec.volumes ?? []).flatMap((v: { secret?: { secretName: string } }) =>
          v.secret ? [v.secret.secretName] : [],
        ),
      ),
      ...deployments.flatMap((d) =>
        d.spec.template.spec.containers.flatMap((c: { envFrom: { secretRef?: { name: string } }[] }) =>
          c.envFrom.flatMap((e) => (e.secretRef ? [e.secretRef.name] : [])),
        ),
      ),
    ])
    for (const secret of mounted) assert.ok(created.has(secret), `the runbook never creates ${secret}`)
  })

  it("name Postgres and Redis as the operator's to bring, and set the labeler's public URL", () => {
    const config = base.objects.find((o) => o.kind === 'ConfigMap') as Obj & { data: Record<string, string> }
    assert.equal(new URL(config.data.ATMOS_LABELER_PUBLIC_URL!).protocol, 'https:')
    assert.ok(URL.canParse(config.data.ATMOS_REDIS_URL!))
    // Nothing here runs a database: no StatefulSet, no Deployment of postgres or redis.
    assert.ok(!base.objects.some((o) => /postgres|redis/.test(o.metadata.name)))
    const configText = readFileSync(join(k8s, 'base', 'config.yaml'), 'utf8')
    const runbook = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')
    for (const text of [configText, runbook]) {
      assert.match(text, /CloudNativePG/)
      assert.match(text, /managed/)
      assert.match(text, /ATMOS_DATABASE_URL/)
      assert.match(text, /ATMOS_REDIS_URL/)
    }
  })

  it("run each service from its image, built from the one Dockerfile with that service's name", () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8')
    const imageOf: Record<string, string> = { 'relay-delivery': 'relay', 'atmos-migrate': 'labeler' }
    const workloads = base.objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job')
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        const service = imageOf[w.metadata.name] ?? w.metadata.name
        assert.ok(SERVICES.includes(service), `${w.metadata.name}: ${service} is not a service`)
        assert.equal(c.image.split(':')[0], `atmos/${service}`, `${w.metadata.name}: image`)
        // The Dockerfile's guard accepts that name (docker build --build-arg SERVICE=<name>).
        assert.match(dockerfile, new RegExp(`in (?:[a-z-]+\\|)*${service}(?:\\|[a-z-]+)*\\)`))
      }
    }
  })

  it('keep the ops ports off the LoadBalancer Services, on ClusterIP Services of their own', () => {
    const services = base.objects.filter((o) => o.kind === 'Service')
    const balancers = services.filter((s) => s.spec.type === 'LoadBalancer')
    assert.deepEqual(balancers.map((s) => s.metadata.name).sort(), ['fbl-ingest', 'relay'])
    for (const svc of balancers) {
      for (const p of svc.spec.ports) assert.notEqual(p.targetPort, 'ops', `${svc.metadata.name} exposes ops`)
      const ops = services.find((s) => s.metadata.name === `${svc.metadata.name}-ops`)
      assert.ok(ops, `no ${svc.metadata.name}-ops Service`)
      assert.equal(ops.spec.type, 'ClusterIP')
      assert.deepEqual(ops.spec.selector, svc.spec.selector)
      assert.deepEqual(
        ops.spec.ports.map((p: { targetPort: string }) => p.targetPort),
        ['ops'],
      )
    }
  })

  it('give every Deployment a PodDisruptionBudget that selects its pods and lets a drain proceed', () => {
    const budgets = base.objects.filter((o) => o.kind === 'PodDisruptionBudget')
    for (const d of deployments) {
      const pdb = budgets.filter((b) => selects(b.spec.selector.matchLabels, d.spec.template.metadata.labels))
      assert.equal(pdb.length, 1, `${d.metadata.name}: ${pdb.length} budgets`)
      // maxUnavailable: a single-replica Deployment would block every drain with minAvailable: 1.
      assert.equal(pdb[0]!.spec.maxUnavailable, 1, `${d.metadata.name}: maxUnavailable`)
      assert.equal(pdb[0]!.spec.minAvailable, undefined)
    }
  })

  it('autoscale the delivery and verification workers, which leave their replica count to it', () => {
    const hpas = base.objects.filter((o) => o.kind === 'HorizontalPodAutoscaler')
    const prod = kustomize(join(k8s, 'overlays/production'))
    const overlay = loadYaml(join(k8s, 'overlays/production/kustomization.yaml'))[0] as unknown as {
      replicas: { name: string }[]
    }
    assert.deepEqual(hpas.map((h) => h.spec.scaleTargetRef.name).sort(), ['labeler', 'relay-delivery'])
    for (const hpa of hpas) {
      const target = deployments.find((d) => d.metadata.name === hpa.spec.scaleTargetRef.name)
      assert.ok(target && hpa.spec.scaleTargetRef.kind === 'Deployment', `${hpa.metadata.name}: target`)
      assert.equal(target.spec.replicas, undefined, `${target.metadata.name}: replicas fights the autoscaler`)
      assert.ok(!overlay.replicas.some((r) => r.name === target.metadata.name), 'overlay sets replicas too')
      assert.ok(hpa.spec.minReplicas >= 1 && hpa.spec.maxReplicas > hpa.spec.minReplicas)
      // CPU utilisation is measured against the request: every container must have one.
      const cpu = hpa.spec.metrics.find(
        (m: { type: string; resource?: { name: string } }) => m.type === 'Resource' && m.resource?.name === 'cpu',
      )
      assert.ok(cpu, `${hpa.metadata.name}: a CPU metric`)
      for (const c of target.spec.template.spec.containers) assert.ok(c.resources.requests.cpu)
      for (const patch of prod.patches.filter((p) => p.kind === 'HorizontalPodAutoscaler'))
        assert.ok(patch.spec.maxReplicas > patch.spec.minReplicas, `${patch.metadata.name}: production bounds`)
    }
  })

  describe('network policies: only what talks to what', () => {
    const policies = base.objects.filter((o) => o.kind === 'NetworkPolicy')
    const PUBLIC: Record<string, string[]> = {
      labeler: ['xrpc'],
      relay: ['submission', 'api'], // api: the send API, reached through the Ingress controller like the admin's web
      'fbl-ingest': ['smtp'],
      admin: ['web'],
      scheduler: [],
      webhooks: [],
      'relay-delivery': [],
    }
    const pods = [...deployments, ...base.objects.filter((o) => o.kind === 'Job')].map((w) => ({
      name: w.metadata.name,
      labels: w.spec.template.metadata.labels as Record<string, string>,
      ports: w.spec.template.spec.containers.flatMap((c: { ports?: Port[] }) => c.ports ?? []) as Port[],
    }))
    const pod = (name: string) => pods.find((p) => p.name === name)!
    const monitoring = { 'kubernetes.io/metadata.name': 'monitoring' }
    const elsewhere = { 'kubernetes.io/metadata.name': 'somewhere-else' }

    it('start from deny-all, both ways', () => {
      assert.ok(
        policies.some(
          (p) =>
            Object.keys(p.spec.podSelector).length === 0 &&
            [...p.spec.policyTypes].sort().join() === 'Egress,Ingress' &&
            !p.spec.ingress &&
            !p.spec.egress,
        ),
      )
    })

    it('admit the world only on the public listeners; ops only from the monitoring namespace', () => {
      assert.deepEqual(Object.keys(PUBLIC).sort(), deployments.map((d) => d.metadata.name).sort())
      for (const name of Object.keys(PUBLIC)) {
        const p = pod(name)
        for (const port of p.ports) {
          const open = ingressAllowed(policies, p, port, { namespace: elsewhere })
          assert.equal(open, PUBLIC[name]!.includes(port.name), `${name}:${port.name} open to anyone: ${open}`)
        }
        const ops = p.ports.find((x) => x.name === 'ops')!
        assert.ok(ingressAllowed(policies, p, ops, { namespace: monitoring }), `${name}: Prometheus scrapes ops`)
      }
    })

    it('let every pod reach DNS, Postgres and Redis', () => {
      for (const p of pods)
        for (const port of [53, 5432, 6379]) assert.ok(egressAllowed(policies, p, port), `${p.name} -> ${port}`)
    })

    it('let only delivery reach port 25, and only the labeler, delivery, the admin and webhooks reach HTTPS', () => {
      for (const p of pods) {
        assert.equal(egressAllowed(policies, p, 25), p.name === 'relay-delivery', `${p.name} -> 25`)
        assert.equal(
          egressAllowed(policies, p, 443),
          ['labeler', 'relay-delivery', 'admin', 'webhooks'].includes(p.name),
          `${p.name} -> 443`,
        )
      }
    })

    it("let the admin, and no other service inside the cluster, reach the labeler's label API", () => {
      const labeler = pod('labeler')
      const xrpc = labeler.ports.find((x) => x.name === 'xrpc')!
      for (const p of pods)
        assert.equal(
          egressAllowed(policies, p, xrpc.containerPort, { pod: labeler, portName: 'xrpc' }),
          p.name === 'admin',
          `${p.name} -> labeler:xrpc`,
        )
      // ...and the labeler admits it (its xrpc port is public anyway).
      assert.ok(ingressAllowed(policies, labeler, xrpc, { pod: pod('admin') }))
    })
  })
})

const NAMESPACE = 'atmosphere-mail'

type Port = { name: string; containerPort: number; protocol?: string }
type Peer = { pod?: { labels: Record<string, string> }; namespace?: Record<string, string> }
type PolicyPort = { port?: number | string; protocol?: string }
type PolicyPeer = {
  podSelector?: { matchLabels?: Record<string, string> }
  namespaceSelector?: { matchLabels?: Record<string, string> }
  ipBlock?: unknown
}

/** Whether a label selector (matchLabels only: ours use nothing else) selects these labels. */
function selects(matchLabels: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return Object.entries(matchLabels ?? {}).every(([k, v]) => labels[k] === v)
}

/** Whether a rule's ports admit a port, by number or by the destination's port name. */
function portMatches(ports: PolicyPort[] | undefined, number: number, name?: string): boolean {
  if (!ports || ports.length === 0) return true
  return ports.some(
    (p) => (p.protocol ?? 'TCP') !== 'SCTP' && (p.port === undefined || p.port === number || p.port === name),
  )
}

/** Whether a rule's peers admit a peer: no peers is anyone; a pod peer is in our namespace. */
function peerMatches(peers: PolicyPeer[] | undefined, peer: Peer): boolean {
  if (!peers || peers.length === 0) return true
  return peers.some((p) => {
    if (p.ipBlock) return !peer.pod
    if (p.namespaceSelector) {
      const ns = peer.pod ? { 'kubernetes.io/metadata.name': NAMESPACE } : (peer.namespace ?? {})
      if (!selects(p.namespaceSelector.matchLabels, ns)) return false
      return !p.podSelector || (peer.pod !== undefined && selects(p.podSelector.matchLabels, peer.pod.labels))
    }
    // A podSelector alone: pods of this namespace only.
    return peer.pod !== undefined && selects(p.podSelector?.matchLabels, peer.pod.labels)
  })
}

function ingressAllowed(policies: Obj[], pod: { labels: Record<string, string> }, port: Port, from: Peer): boolean {
  return policies
    .filter((p) => p.spec.policyTypes.includes('Ingress') && selects(p.spec.podSelector.matchLabels, pod.labels))
    .some((p) =>
      (p.spec.ingress ?? []).some(
        (r: { from?: PolicyPeer[]; ports?: PolicyPort[] }) =>
          peerMatches(r.from, from) && portMatches(r.ports, port.containerPort, port.name),
      ),
    )
}

/** Whether a pod may open a connection to a port: on the Internet (no `to`), or on a pod of ours. */
function egressAllowed(
  policies: Obj[],
  pod: { labels: Record<string, string> },
  port: number,
  to: { pod: { labels: Record<string, string> }; portName: string } | undefined = undefined,
): boolean {
  const peer: Peer = to ? { pod: to.pod } : { namespace: {} }
  return policies
    .filter((p) => p.spec.policyTypes.includes('Egress') && selects(p.spec.podSelector.matchLabels, pod.labels))
    .some((p) =>
      (p.spec.egress ?? []).some((r: { to?: PolicyPeer[]; ports?: PolicyPort[] }) => {
        if (!to && r.to && r.to.length > 0 && !r.to.some((x) => x.ipBlock)) return false
        return peerMatches(r.to, peer) && portMatches(r.ports, port, to?.portName)
      }),
    )
}

/** The kubectl commands in a Markdown page: fenced blocks (continuations joined) and inline code. */
function kubectlCommands(markdown: string): string[] {
  const commands: string[] = []
  const fences = markdown.split('```')
  for (const [i, part] of fences.entries()) {
    if (i % 2 === 1) {
      const lines = part.replace(/\\\n\s*/g, ' ').split('\n')
      commands.push(...lines.map((l) => l.trim()).filter((l) => l.startsWith('kubectl ')))
    } else {
      for (const m of part.replace(/\n/g, ' ').matchAll(/`(kubectl [^`]+)`/g)) commands.push(m[1]!)
    }
  }
  return commands
}
