export { ManualClock } from './clock.ts'
export {
  createTestDatabase,
  TEMPLATE_DATABASE_URL,
  TEST_DATABASE_PREFIX,
  type TestDatabase,
  testDatabasePrefix,
} from './database.ts'
export { type DnsBehaviour, type DnsRecords, type DnsZone, reverseName, TestDnsServer } from './dns-server.ts'
export { type JetstreamCommit, type JetstreamEvent, JetstreamServer } from './jetstream-server.ts'
export { describeServiceLifecycle } from './lifecycle.ts'
export { dkimPublicKey, goodMailZone, withNames } from './mail-zone.ts'
export { MtaStsServer, type PolicyResponse } from './mta-sts-server.ts'
export { MxSink, type MxSinkOptions, type SinkMessage, type SinkReply } from './mx-sink.ts'
export { closedPort } from './net.ts'
export { PlcDirectoryServer } from './plc-server.ts'
export { type CliResult, type Exit, type LogLine, runCli, ServiceProcess } from './process.ts'
export { deletePrefix, TEST_REDIS_URL, testRedis, testRedisPrefix } from './redis.ts'
export {
  type IssuedCertificate,
  type TestCertificateAuthority,
  testCertificate,
  testCertificateAuthority,
} from './tls.ts'
