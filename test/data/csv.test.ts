/** The one CSV reader/writer: what it writes reads back unchanged; label-file quirks; errors name the line. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import { csvRecord, csvText, parseCsv } from '../../src/data/csv.ts';

const right = <A>(e: E.Either<unknown, A>): A => {
  if (E.isLeft(e)) throw new Error(JSON.stringify(e.left));
  return e.right;
};

describe('CSV', () => {
  it('quotes commas, quotes, \\n and \\r, and reads them back exactly', () => {
    const rows = [['name', 'note'], ['a,b', 'say "hi"'], ['line\nbreak', 'carriage\rreturn'], ['crlf\r\nend', ' padded ']];
    const text = csvText(rows);
    expect(text).toBe('name,note\n"a,b","say ""hi"""\n"line\nbreak","carriage\rreturn"\n"crlf\r\nend", padded \n');
    const back = right(parseCsv('t.csv', text, { trim: false }));
    expect([back.header, ...back.rows]).toEqual(rows);
    // Each row's line is where it starts, after the breaks inside earlier quoted fields.
    expect(back.lines).toEqual([2, 3, 6]);
  });

  it('round-trips any strings (property)', () => {
    const cell = fc.string({ unit: fc.constantFrom('a', 'b', ',', '"', '\n', '\r', ' ', 'é') });
    fc.assert(
      fc.property(fc.array(fc.tuple(cell, cell, cell), { minLength: 1, maxLength: 5 }), (rows) => {
        const back = right(parseCsv('p.csv', csvText([['x', 'y', 'z'], ...rows]), { trim: false }));
        expect(back.rows).toEqual(rows);
      }),
    );
  });

  it('writes numbers in shortest round-trip form, NaN and infinities spelled out, null as empty', () => {
    expect(csvRecord([0.1 + 0.2, 1e-7, NaN, Infinity, -Infinity, null, 3])).toBe('0.30000000000000004,1e-7,NaN,Infinity,-Infinity,,3\n');
  });

  it('reads label files: BOM, CRLF/LF/CR line ends, blank lines, trimmed fields', () => {
    const c = right(parseCsv('l.csv', '\uFEFFimage_name , target\r\n\r\nISIC_1, 1\nISIC_2,0\rISIC_3 ,1\n   \n'));
    expect(c.header).toEqual(['image_name', 'target']);
    expect(c.rows).toEqual([['ISIC_1', '1'], ['ISIC_2', '0'], ['ISIC_3', '1']]);
    expect(c.lines).toEqual([3, 4, 5]);
    expect(right(parseCsv('n.csv', 'ISIC_1,benign\nISIC_2,malignant\n', { header: false })).rows).toHaveLength(2);
  });

  it('a syntax error names the file, the line and the problem', () => {
    const a = parseCsv('bad.csv', 'a,b\nx,y"z\n');
    expect(E.isLeft(a) && a.left).toMatchObject({ _tag: 'CsvSyntax', file: 'bad.csv', line: 2, reason: 'quote inside an unquoted field' });
    const b = parseCsv('open.csv', 'a,b\n1,"never closed\n');
    expect(E.isLeft(b) && b.left).toMatchObject({ _tag: 'CsvSyntax', file: 'open.csv', reason: 'unterminated quoted field' });
    const c = parseCsv('empty.csv', '\n\n');
    expect(E.isLeft(c) && c.left).toMatchObject({ _tag: 'CsvSyntax', reason: 'empty file (no header)' });
  });
});
