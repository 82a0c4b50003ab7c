export * as Batch from "./Batch.js"
export * as DataLoader from "./DataLoader.js"
export * as Random from "./Random.js"
export * as TensorDataset from "./TensorDataset.js"
