export type { Fault, FaultInput } from "./faults.js";
export type { LatencySummary } from "./latency.js";
export type { AudienceChange, AudienceRecord, CompanyRecord, FlagCounts, PersonRecord } from "./profiles.js";
export { startSimulator, type Simulator, type SimulatorOptions } from "./server.js";
export type { EventFilter, RecordedBatch, RecordedEvent, SimulatorState, SimulatorStats } from "./state.js";
