export * from './ids.ts'
export * from './reply.ts'
