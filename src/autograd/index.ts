export { vjp, grad, valueAndGrad, type GradOptions } from './transforms.ts';
export { customVjp, detach } from './trace.ts';
export {
  flatten as treeFlatten,
  flattenWithPath as treeFlattenWithPath,
  unflatten as treeUnflatten,
  treeMap,
  treeMapWithPath,
  treeLeaves,
  treeFromPaths,
  keystr,
  type Tree,
  type TreeDef,
  type KeyPath,
  type PathKey,
} from './pytree.ts';
export { definePrimitive, getPrimitive, listPrimitives, defineCompositeCheck, listCompositeChecks, type Primitive, type CheckCase, type CheckGen } from './registry.ts';
export { checkGradients, DEFAULT_TOLERANCE, type GradCheckResult } from './gradcheck.ts';
export * as checkgen from './checkgen.ts';
