import { fileURLToPath } from 'node:url'

/** The six services, where each one's entry point is and the ops port it takes by default. */
export const SERVICES = (
  [
    { name: 'labeler', port: 8101 },
    { name: 'relay', port: 8102 },
    { name: 'scheduler', port: 8103 },
    { name: 'fbl-ingest', port: 8104 },
    { name: 'admin', port: 8105 },
    { name: 'webhooks', port: 8106 },
  ] as const
).map((s) => ({ ...s, entry: fileURLToPath(new URL(`../../../services/${s.name}/src/index.ts`, import.meta.url)) }))

export type ServiceName = (typeof SERVICES)[number]['name']

/**
 * The stack's own listeners besides the ops ports, each on an unprivileged loopback port
 * (production sets 587, 25 … explicitly), shifted by ATMOS_STACK_PORT_OFFSET like the ops
 * ports so that two stacks (or a test) run side by side. A variable already set wins.
 */
export const LOCAL_PORTS = {
  ATMOS_LABELER_XRPC_PORT: 2583,
  ATMOS_RELAY_SUBMISSION_PORT: 2587,
  ATMOS_RELAY_API_PORT: 2588,
  ATMOS_FBL_INGEST_SMTP_PORT: 2525,
  ATMOS_ADMIN_WEB_PORT: 3000,
} as const
