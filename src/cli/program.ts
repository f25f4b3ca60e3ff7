/**
 * What every command shares: commander set up so that a usage error is one line naming the problem
 * with exit code 2 (never a stack trace), and the final exit. Options: src/cli/options.ts.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';

export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

export class UsageExit extends Error {}

/** A commander program that throws instead of exiting and keeps its error text to one line. */
export function program(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .exitOverride()
    .allowExcessArguments(false)
    .showHelpAfterError(false)
    .configureOutput({
      writeErr: () => {},
      outputError: () => {},
    })
    .helpOption('-h, --help', 'show this help and exit');
}

/**
 * Parses `argv` (user arguments only). Returns null after --help (printed), or throws UsageExit
 * with commander's message.
 */
export function parseArgs(cmd: Command, argv: readonly string[]): Command | null {
  try {
    cmd.parse([...argv], { from: 'user' });
    return cmd;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') return null;
      throw new UsageExit(e.message.replace(/^error: /, '').split('\n')[0]);
    }
    throw e;
  }
}

/** Prints a usage error the same way everywhere. */
export function printUsage(name: string, message: string): number {
  process.stderr.write(`${name}: ${message} (see npm run ${name} -- --help)\n`);
  return EXIT.usage;
}

/** Ends a command with a usage error (caught and printed by `cliMain`). */
export const usageExit = (message: string): never => {
  throw new UsageExit(message);
};

/** A command's main: a UsageExit thrown anywhere in `body` is printed as a usage error (exit 2). */
export const cliMain =
  (name: string, body: (argv: string[]) => Promise<number>) =>
  async (argv: string[]): Promise<number> => {
    try {
      return await body(argv);
    } catch (e) {
      if (e instanceof UsageExit) return printUsage(name, e.message);
      throw e;
    }
  };

/** Runs `main` when the file is the process's entry point, then exits with its code. */
export function runIfMain(metaUrl: string, main: (argv: string[]) => Promise<number>, name: string): void {
  const entry = process.argv[1] ? path.resolve(process.argv[1]) : '';
  if (entry !== fileURLToPath(metaUrl)) return;
  main(process.argv.slice(2)).then(
    (code) => exitAfterFlush(code),
    (e: unknown) => {
      const err = e as Error;
      process.stderr.write(`${name}: error: ${err?.message?.split('\n')[0] ?? String(e)}\n`);
      if (process.env.STOCHCONV_DEBUG) process.stderr.write(`${err?.stack ?? ''}\n`);
      exitAfterFlush(EXIT.failure);
    },
  );
}

/** Exits once stdout and stderr have drained (worker threads would otherwise keep the process up). */
export function exitAfterFlush(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
