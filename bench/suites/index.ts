/** The bench suites; each issue's work adds its own file and one line here. */
import type { Suite } from '../harness.ts';
import { conv } from './conv.ts';
import { core } from './core.ts';
import { data } from './data.ts';
import { fmnist } from './fmnist.ts';
import { gemmSuite } from './gemm.ts';
import { gpu } from './gpu.ts';
import { models } from './models.ts';

export const suites: Suite[] = [core, conv, gpu, gemmSuite, models, data, fmnist];
