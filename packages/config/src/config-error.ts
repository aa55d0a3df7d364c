// Its own module so that the CLI parser (src/cli.ts) can recognise a bad configuration
// without loading the loader and its JSON-with-comments parser to answer --help.

/** A configuration that cannot be used; the message names every offending field and its source. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}
