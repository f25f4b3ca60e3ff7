/**
 * The entry point of a cell's process: `npm run train` with the given arguments, tied to its parent.
 * The parent holds the other end of stdin; when it dies (even by SIGKILL) stdin ends and this
 * process exits at once, leaving the run folder at its last checkpoint (written atomically) for
 * the next attempt to resume — never a second writer racing the retry.
 */
import { main } from '../train/cli.ts';
import { exitAfterFlush } from '../cli/program.ts';

process.stdin.on('end', () => process.exit(137));
process.stdin.resume();
main(process.argv.slice(2)).then(
  (code) => exitAfterFlush(code),
  (e: unknown) => {
    process.stderr.write(`train: error: ${(e as Error)?.message?.split('\n')[0] ?? String(e)}\n`);
    exitAfterFlush(1);
  },
);
