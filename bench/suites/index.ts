/** The bench suites; each issue's work adds its own file and one line here. */
import type { Suite } from '../harness.ts';
import { core } from './core.ts';

export const suites: Suite[] = [core];
