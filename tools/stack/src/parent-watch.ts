// Preloaded (`node --import`) into every service the stack starts. The stack holds the
// write end of the service's stdin pipe and never writes to it: when the stack is gone,
// however it went (kill -9 included, which no handler of its own can catch), the pipe
// closes and the service stops itself the ordinary way, with SIGTERM and its drain,
// instead of living on and holding its ports for the next start.
const stdin = process.stdin
let gone = false
const onParentGone = () => {
  if (gone) return
  gone = true
  // Its stdout and stderr pipes are broken too: a failed log write must not stop the drain.
  process.stdout.on('error', () => {})
  process.stderr.on('error', () => {})
  process.kill(process.pid, 'SIGTERM')
}
stdin.on('end', onParentGone)
stdin.on('close', onParentGone)
stdin.on('error', onParentGone)
stdin.resume()
// Watching must not be what keeps the service running once it has stopped.
;(stdin as { unref?: () => void }).unref?.()
