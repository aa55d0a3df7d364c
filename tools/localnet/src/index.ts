export { type DemoAccount, freePort, HANDLE_DOMAIN } from './identity.ts'
export {
  DEMO_DEFAULTS,
  LocalNetwork,
  type LocalNetworkOptions,
  type NetworkInfo,
  type NetworkPorts,
  SINK_DOMAIN,
  SINK_HOST,
  SINK_PROVIDER,
} from './network.ts'
export { type NetworkAddresses, serviceDefaults } from './service-env.ts'
export { type NetworkSettings, networkSettings, plcDatabaseUrl } from './settings.ts'
export { type NextReply, REPLIES, type SinkEntry, type Verdicts } from './sink.ts'
export {
  addToZone,
  formatRecord,
  type PublishedRecord,
  parseZoneLine,
  parseZoneText,
  ZoneLineError,
} from './zone.ts'
