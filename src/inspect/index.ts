/**
 * What a model looks at: Grad-CAM at any named layer, window maps of stochastic models, integrated
 * gradients, and the pictures `npm run explain`, `npm run evaluate` and `npm run serve` draw.
 */
export { gradCam, windowMap, integratedGradients, spatialLayers, defaultLayer, stochasticStemLayer, type GradCam, type GradCamOptions, type WindowMap, type IntegratedGradients, type IntegratedGradientsOptions, type AttributionOptions } from './attribution.ts';
export { resizeBilinear, resizeArea, normaliseMap } from './maps.ts';
export { colorLut, overlayHeat, denormalise, type ColorMap } from './render.ts';
export { thresholdsSvg, confidentErrors, errorsPng, writeEvaluationFigures, type Scored } from './figures.ts';
export { explainInput, explanationPng, loadImageInput, type Explanation, type ExplainOptions, type ImageInput, type Method } from './explain.ts';
