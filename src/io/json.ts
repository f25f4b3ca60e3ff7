/**
 * Reading a JSON file, once for every reader of one (config and experiment files, run folders,
 * checkpoints): a missing file, an unreadable one and a syntax error are told apart, and a syntax
 * error names the line and column at fault.
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';

export interface JsonFileError {
  readonly _tag: 'JsonFileError';
  readonly file: string;
  readonly reason: 'missing' | 'unreadable' | 'syntax';
  /** Where a syntax error is (1-based), when the parser says. */
  readonly line: number | null;
  readonly column: number | null;
  /** What is wrong, without the position. */
  readonly message: string;
}

/** The 1-based line and column of a character offset in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

/** A JSON.parse error's message split into what is wrong and where (V8 says "at position N", sometimes with "(line L column C)"). */
function syntaxError(file: string, text: string, e: Error): JsonFileError {
  const m = /^(.*?)(?: in JSON)? at position (\d+)(?: \(line \d+ column \d+\))?$/s.exec(e.message);
  const at = m ? lineColumn(text, Number(m[2])) : null;
  return { _tag: 'JsonFileError', file, reason: 'syntax', line: at?.line ?? null, column: at?.column ?? null, message: m ? m[1] : e.message };
}

/** The parsed contents of a JSON file. */
export function readJsonFile(file: string): E.Either<JsonFileError, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return E.left({ _tag: 'JsonFileError', file, reason: err.code === 'ENOENT' ? 'missing' : 'unreadable', line: null, column: null, message: err.message });
  }
  try {
    return E.right(JSON.parse(text) as unknown);
  } catch (e) {
    return E.left(syntaxError(file, text, e as Error));
  }
}

/** One line for a user: `what` names the kind of file (e.g. 'config file'). */
export function renderJsonFileError(e: JsonFileError, what = 'file'): string {
  if (e.reason === 'missing') return `${what} not found: ${e.file}`;
  if (e.reason === 'unreadable') return `cannot read ${what} ${e.file}: ${e.message}`;
  return `${what} ${e.file}${e.line !== null ? `, line ${e.line} column ${e.column}` : ''}: not valid JSON: ${e.message}`;
}
