import { fileURLToPath } from 'node:url'

/** The five services, where each one's entry point is and the ops port it takes by default. */
export const SERVICES = [
  { name: 'labeler', port: 8101 },
  { name: 'relay', port: 8102 },
  { name: 'scheduler', port: 8103 },
  { name: 'fbl-ingest', port: 8104 },
  { name: 'admin', port: 8105 },
].map((s) => ({ ...s, entry: fileURLToPath(new URL(`../../../services/${s.name}/src/index.ts`, import.meta.url)) }))
