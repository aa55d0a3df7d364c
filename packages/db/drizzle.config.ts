import { defineConfig } from 'drizzle-kit'

// `pnpm --filter @atmos/db generate` writes a new SQL migration after a schema change.
// The migrations are checked in; services apply them with `atmos-migrate`.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema/index.ts',
  out: './migrations',
  strict: true,
  casing: 'snake_case',
})
