/**
 * Every ```ts block of the README runs as written (from a file inside the repo, importing
 * '@stochconv/engine'), and prints what its comments promise: a comment after a `console.log(…)`
 * (the part after `→` when there is one) or a `// → …` line below it is the expected output of that
 * call. Whitespace and the typed-array length Node adds (`Float32Array(2)`) are ignored; `…` ends
 * a prefix match.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
// A nested folder inside the repo: the self-reference must resolve from anywhere in it.
const dir = mkdtempSync(join(root, 'test', '.readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const normalize = (s: string): string => s.replace(/(Float32|Float64|Int32|Uint8)Array\(\d+\)/g, '$1Array').replace(/\s+/g, '');

/** The printed results a snippet's comments promise, in source order. */
export function expectedOutputs(code: string): string[] {
  const out: string[] = [];
  for (const line of code.split('\n')) {
    const own = /^\s*\/\/\s*→\s*(.+)$/.exec(line);
    if (own) {
      out.push(own[1]);
      continue;
    }
    const trailing = /console\.log\(.*\/\/\s*(.+)$/.exec(line);
    if (trailing) out.push(trailing[1].includes('→') ? trailing[1].slice(trailing[1].lastIndexOf('→') + 1) : trailing[1]);
  }
  return out.map((s) => s.trim());
}

const matches = (printed: string, expected: string): boolean => {
  const [p, e] = [normalize(printed), normalize(expected)];
  return e.endsWith('…') ? p.startsWith(e.slice(0, -1)) : p === e;
};

/** Each expectation must match a printed line, in order. Returns the first that does not. */
export function firstUnmet(printed: string[], expected: string[]): string | undefined {
  let at = 0;
  for (const e of expected) {
    while (at < printed.length && !matches(printed[at], e)) at++;
    if (at === printed.length) return e;
    at++;
  }
  return undefined;
}

describe('README snippets', () => {
  it('has snippets, and they promise results', () => {
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.flatMap(expectedOutputs).length).toBeGreaterThanOrEqual(7);
  });
  it('the matcher fails a wrong result', () => {
    expect(firstUnmet(['[ 2, 3 ] Float32Array(2) [ 66, 75 ]'], ['[2, 3] Float32Array [66, 75]'])).toBeUndefined();
    expect(firstUnmet(['[ 2, 3 ] Float32Array(2) [ 66, 76 ]'], ['[2, 3] Float32Array [66, 75]'])).toBe('[2, 3] Float32Array [66, 75]');
    expect(firstUnmet(['[ 2, 1 ] 4008829'], ['[2, 1] …'])).toBeUndefined();
    expect(firstUnmet(['a', 'b'], ['b', 'a'])).toBe('a');
  });
  blocks.forEach((code, i) => {
    it(`snippet ${i + 1} runs and prints what its comments say`, () => {
      const file = join(dir, `snippet-${i + 1}.ts`);
      writeFileSync(file, code);
      const out = execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: dir, encoding: 'utf8' });
      expect(out.length).toBeGreaterThan(0);
      const printed = out.split('\n');
      expect(firstUnmet(printed, expectedOutputs(code)), `printed:\n${out}`).toBeUndefined();
    });
  });
});
