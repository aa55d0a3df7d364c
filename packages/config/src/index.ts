export {
  type BaseConfig,
  cleanSenderSection,
  databaseSection,
  httpSection,
  logSection,
  poolSection,
  redisSection,
  serviceConfigSchema,
  warmingTiersField,
} from './base.ts'
export {
  type ArgSpec,
  type Command,
  type CommandContext,
  type CommandTree,
  command,
  EX_CONFIG,
  EX_USAGE,
  type OptionSpec,
  type Parsed,
  runCli,
  subject,
  UsageError,
  type Values,
} from './cli.ts'
export { field, isLoopbackHost, parseDuration, section } from './fields.ts'
export {
  CONFIG_FILE_ENV,
  ConfigError,
  ENV_PREFIX,
  envNameFor,
  type LoadOptions,
  leafPaths,
  loadConfig,
} from './load.ts'
