/**
 * Neural-network layers (pure functions over plain records), the MBConv block, and the
 * EfficientNet family with every Stochastic Convolution architecture of the paper.
 */
export * from './init.ts';
export * from './layers.ts';
export * from './mbconv.ts';
export * from './model.ts';
export { type Variant, type ModelConfig, type BuildOptions, type Params, type State, type Input, type Scaling, type StageArgs, SCALING, B0_STAGES, variants, roundFilters, roundRepeats, buildConfig, checkInput, expectedInput, inputOf, inputAt, configParameterCount, type InputSides } from './efficientnet.ts';
export { type Arch, type ArchSpec, type PathSpec, type ModelEntry, type ModelName, ARCHS, MODELS, archNames, modelNames } from './archs.ts';
export * as efficientnet from './family.ts';
export { fromTorchvision, toTorchvision } from './torchvision.ts';
export { summary, summaryData, configSummary, modelTable, type SummaryRow, type SummaryData, type SummaryInput, type ReceptiveField } from './summary.ts';
export * as layers from './combinators.ts';
export { type Layer, type Network, type NetworkOptions, type LayerRow, createNetwork, forwardNetwork, networkSummary, describeNetwork, receptiveField } from './combinators.ts';
export { dwsNet, DWSNET_WIDTHS, type DwsNetOptions } from './dwsnet.ts';
