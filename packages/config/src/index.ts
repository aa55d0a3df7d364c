export {
  type BaseConfig,
  databaseSection,
  httpSection,
  logSection,
  poolSection,
  redisSection,
  serviceConfigSchema,
  warmingTiersField,
} from './base.ts'
export { field, parseDuration, section } from './fields.ts'
export {
  CONFIG_FILE_ENV,
  ConfigError,
  ENV_PREFIX,
  envNameFor,
  type LoadOptions,
  leafPaths,
  loadConfig,
} from './load.ts'
