/** One job per stored message: the listener's enqueue and the reconciler's are the same job. */
export function inboundJobId(inboundId: number): string {
  return `inbound-${inboundId}`
}
