import { readFileSync } from 'node:fs'
import { type ParseError, parse as parseJsonc, printParseErrorCode } from 'jsonc-parser'
import type { z } from 'zod'
import { ConfigError } from './config-error.ts'

export { ConfigError }

export const ENV_PREFIX = 'ATMOS'
export const CONFIG_FILE_ENV = `${ENV_PREFIX}_CONFIG`

export type LoadOptions = {
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>
  /** A JSON-with-comments file; defaults to $ATMOS_CONFIG when set. */
  file?: string
}

/** `relay.submission.maxSize` -> `ATMOS_RELAY_SUBMISSION_MAX_SIZE` */
export function envNameFor(path: readonly string[]): string {
  const parts = path.map((p) =>
    p
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/-/g, '_')
      .toUpperCase(),
  )
  return [ENV_PREFIX, ...parts].join('_')
}

type Def = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; in?: z.ZodType }
const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def

/** Every leaf path of an object schema, looking through defaults, optionals and pipes. */
export function leafPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  let def = defOf(schema)
  while (def.type !== 'object') {
    const inner = def.innerType ?? (def.type === 'pipe' ? def.in : undefined)
    if (!inner) return prefix.length ? [prefix] : []
    def = defOf(inner)
  }
  return Object.entries(def.shape ?? {}).flatMap(([key, child]) => leafPaths(child, [...prefix, key]))
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
  }
  const errors: ParseError[] = []
  const value = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false })
  if (errors.length) {
    const details = errors.map((e) => {
      const before = text.slice(0, e.offset)
      const line = before.split('\n').length
      const column = e.offset - before.lastIndexOf('\n')
      return `${printParseErrorCode(e.error)} at ${line}:${column}`
    })
    throw new ConfigError(`config file ${file} is not valid JSON with comments: ${details.join('; ')}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`config file ${file} must hold an object at the top level`)
  }
  return value as Record<string, unknown>
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown) {
  let node = target
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[path[path.length - 1] as string] = value
}

/**
 * Loads a service's configuration: defaults from the schema, then the config file, then
 * environment variables (`ATMOS_<SECTION>_<FIELD>`), validated as a whole.
 */
export function loadConfig<S extends z.ZodType>(schema: S, opts: LoadOptions = {}): z.output<S> {
  const env = opts.env ?? process.env
  const file = opts.file ?? env[CONFIG_FILE_ENV]
  const raw: Record<string, unknown> = file ? readConfigFile(file) : {}
  const fromEnv = new Map<string, string>()
  for (const path of leafPaths(schema)) {
    const name = envNameFor(path)
    const value = env[name]
    if (value === undefined || value === '') continue
    setPath(raw, path, value)
    fromEnv.set(path.join('.'), name)
  }
  const result = schema.safeParse(raw)
  if (result.success) return result.data
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.map(String).join('.')
    const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((k) => (key ? `${key}.${k}` : k)) : [key]
    const where = keys
      .map((k) => {
        const envName = fromEnv.get(k)
        return envName ? `${k} (from ${envName})` : file ? `${k} (in ${file})` : k || '(root)'
      })
      .join(', ')
    return `${where}: ${issue.message}`
  })
  throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`)
}
