import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'

// Every regular expression written in a source tree, read from the source itself (not from
// what a module exports), so a pattern cannot escape the ReDoS check by being local to a
// function. Patterns built from pieces are evaluated when every piece is a constant
// (`new RegExp([String.raw`…`, …].join('|'))`); anything else is reported as dynamic.

export const REPO = new URL('../../../', import.meta.url).pathname

export interface FoundRegex {
  /** `path:line`, the path relative to the repository. */
  at: string
  source: string
  flags: string
}

export interface DynamicRegex {
  at: string
  /** The constructor call as written. */
  code: string
}

function tsFiles(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...tsFiles(path))
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** The value of an expression made only of string constants, or undefined. */
function constantString(node: ts.Expression): string | undefined {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text
  if (ts.isParenthesizedExpression(node)) return constantString(node.expression)
  if (
    ts.isTaggedTemplateExpression(node) &&
    node.tag.getText() === 'String.raw' &&
    ts.isNoSubstitutionTemplateLiteral(node.template)
  )
    return node.template.rawText
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const l = constantString(node.left)
    const r = constantString(node.right)
    return l === undefined || r === undefined ? undefined : l + r
  }
  if (
    ts.isCallExpression(node) &&
    ts.isPropertyAccessExpression(node.expression) &&
    node.expression.name.text === 'join' &&
    ts.isArrayLiteralExpression(node.expression.expression)
  ) {
    const items = node.expression.expression.elements.map((e) => constantString(e))
    const sep = node.arguments[0] ? constantString(node.arguments[0]) : ','
    if (sep === undefined || items.some((i) => i === undefined)) return undefined
    return items.join(sep)
  }
  return undefined
}

export function scanSources(dirs: string[]): { found: FoundRegex[]; dynamic: DynamicRegex[] } {
  const found: FoundRegex[] = []
  const dynamic: DynamicRegex[] = []
  for (const dir of dirs) {
    for (const file of tsFiles(dir)) {
      const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
      const at = (node: ts.Node) =>
        `${relative(REPO, file)}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}`
      const visit = (node: ts.Node) => {
        if (node.kind === ts.SyntaxKind.RegularExpressionLiteral) {
          const text = node.getText(sf)
          const end = text.lastIndexOf('/')
          found.push({ at: at(node), source: text.slice(1, end), flags: text.slice(end + 1) })
        } else if (
          (ts.isNewExpression(node) || ts.isCallExpression(node)) &&
          ts.isIdentifier(node.expression) &&
          node.expression.text === 'RegExp'
        ) {
          const [pattern, flagsArg] = node.arguments ?? []
          const source = pattern ? constantString(pattern) : ''
          const flags = flagsArg ? constantString(flagsArg) : ''
          if (source === undefined || flags === undefined) dynamic.push({ at: at(node), code: node.getText(sf) })
          else found.push({ at: at(node), source, flags })
        }
        ts.forEachChild(node, visit)
      }
      visit(sf)
    }
  }
  return { found, dynamic }
}

/** `services/<name>/src` of every service: the edge code that reads what strangers send. */
export function serviceSourceDirs(): string[] {
  const services = join(REPO, 'services')
  return readdirSync(services)
    .map((name) => join(services, name, 'src'))
    .filter((dir) => statSync(dir, { throwIfNoEntry: false })?.isDirectory())
}
