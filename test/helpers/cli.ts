/** Runs a CLI's `main(args)` in-process and returns its exit code with what it wrote to stdout and stderr. */
import { vi } from 'vitest';

export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export async function runCli(main: (args: string[]) => Promise<number>, args: string[]): Promise<CliResult> {
  let out = '';
  let err = '';
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    return { code: await main(args), out, err };
  } finally {
    so.mockRestore();
    se.mockRestore();
  }
}
