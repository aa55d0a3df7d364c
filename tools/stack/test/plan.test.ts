// What the stack hands each service, computed without starting anything: the settings one
// service must agree on with another follow the ports the stack chose.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { planServices } from '../src/plan.ts'

const DB = { ATMOS_DATABASE_URL: 'postgres://root@127.0.0.1:5432/atmos_plan_never_used' }

it("the wizard's relay address and the admin's labeler URL follow the stack's listeners and offset", () => {
  const admin = planServices({ ...DB, ATMOS_STACK_PORT_OFFSET: '100' }).find((s) => s.name === 'admin')!
  assert.equal(admin.env.ATMOS_ADMIN_ENROLL_RELAY_PORT, '2687')
  assert.equal(admin.env.ATMOS_ADMIN_ENROLL_RELAY_HOST, '127.0.0.1')
  assert.equal(admin.env.ATMOS_ADMIN_LABELER_URL, 'http://127.0.0.1:2683')
  const relay = planServices({ ...DB, ATMOS_STACK_PORT_OFFSET: '100' }).find((s) => s.name === 'relay')!
  assert.ok(relay.listeners.some((l) => l.what === 'submission' && l.port === 2687))
  assert.ok(relay.listeners.some((l) => l.what === 'send API' && l.port === 2688))
})

it('a value the user set wins', () => {
  const admin = planServices({
    ...DB,
    ATMOS_RELAY_SUBMISSION_PORT: '3587',
    ATMOS_ADMIN_ENROLL_RELAY_HOST: 'relay.example',
  }).find((s) => s.name === 'admin')!
  assert.equal(admin.env.ATMOS_ADMIN_ENROLL_RELAY_PORT, '3587', 'follows the submission port the user chose')
  assert.equal(admin.env.ATMOS_ADMIN_ENROLL_RELAY_HOST, 'relay.example')
  const pinned = planServices({ ...DB, ATMOS_ADMIN_ENROLL_RELAY_PORT: '587' }).find((s) => s.name === 'admin')!
  assert.equal(pinned.env.ATMOS_ADMIN_ENROLL_RELAY_PORT, '587')
})

it("the relay's unsubscribe links point at this stack's admin, which reads the relay's token secret", () => {
  const plan = planServices({ ...DB, ATMOS_STACK_PORT_OFFSET: '100', ATMOS_RELAY_POOL_TOKEN_SECRET_FILE: '/s/token' })
  const relay = plan.find((s) => s.name === 'relay')!
  const admin = plan.find((s) => s.name === 'admin')!
  assert.equal(relay.env.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL, 'http://127.0.0.1:3100/u')
  assert.equal(admin.env.ATMOS_ADMIN_TOKEN_SECRET_FILE, '/s/token')
  const pinned = planServices({ ...DB, ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL: 'https://mail.example/u' })
  assert.equal(
    pinned.find((s) => s.name === 'relay')!.env.ATMOS_RELAY_SUBMISSION_UNSUBSCRIBE_URL,
    'https://mail.example/u',
  )
})
