/** The one JSON-file reader: missing, unreadable and malformed files are told apart, a syntax error by line and column. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { afterAll, describe, expect, it } from 'vitest';
import { lineColumn, readJsonFile, renderJsonFileError } from '../../src/io/json.ts';
import { readConfigFile } from '../../src/train/config.ts';
import { readExperimentFile } from '../../src/experiment/grid.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'json-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const write = (name: string, text: string) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
};
const message = <T>(r: E.Either<{ message: string }, T>) => (E.isLeft(r) ? r.left.message : null);

describe('readJsonFile', () => {
  it('parses a file, and names the file and the line and column of a syntax error', () => {
    expect(readJsonFile(write('ok.json', '{"a": [1, 2]}'))).toEqual(E.right({ a: [1, 2] }));
    const bad = write('bad.json', '{\n  "lr": 0.1,\n  "epochs" 3\n}\n');
    const r = readJsonFile(bad);
    expect(E.isLeft(r) && r.left).toMatchObject({ reason: 'syntax', line: 3, column: 12 });
    expect(E.isLeft(r) && renderJsonFileError(r.left, 'config file')).toMatch(new RegExp(`^config file ${bad}, line 3 column 12: not valid JSON: \\S`));
    const empty = readJsonFile(write('empty.json', ''));
    expect(E.isLeft(empty) && empty.left).toMatchObject({ reason: 'syntax', line: null });
    const absent = readJsonFile(path.join(dir, 'absent.json'));
    expect(E.isLeft(absent) && renderJsonFileError(absent.left)).toBe(`file not found: ${path.join(dir, 'absent.json')}`);
    const folder = readJsonFile(dir);
    expect(E.isLeft(folder) && folder.left.reason).toBe('unreadable');
    expect(lineColumn('ab\ncd\n', 4)).toEqual({ line: 2, column: 2 });
  });

  it('is what the config-file and experiment-file readers report through', () => {
    const bad = write('run.json', '{"lr": 0.1,}');
    expect(message(readConfigFile(bad))).toMatch(new RegExp(`^config file ${bad}, line 1 column 12: not valid JSON`));
    expect(message(readExperimentFile(bad))).toMatch(new RegExp(`^experiment file ${bad}, line 1 column 12: not valid JSON`));
  });
});
