import { isJsonObject, type EventType, type JsonObject } from "./validate.js";

/** Reason an accepted event is not stored, counted in the stats hash as `filtered:<reason>`. */
export type FilterReason = "type_not_supported" | "integration_disabled";

/** Event types that Hydra takes. Page, screen, group and alias calls get 200 and are dropped. */
const DELIVERED_TYPES: ReadonlySet<EventType> = new Set<EventType>(["identify", "track"]);

/** Engage `context.personas.computation_class` values whose identifies wait for the audience sync. */
const ENGAGE_COMPUTATION_CLASSES: ReadonlySet<string> = new Set(["audience", "journey_step", "trait", "computed_trait"]);

function integrationValue(own: JsonObject | undefined, batch: JsonObject | undefined, name: string): unknown {
  const value = own?.[name];
  return value !== undefined ? value : batch?.[name];
}

/**
 * Returns whether the event's `integrations` turn Hydra off: `"Hydra": false` (or
 * `"hydra"`), or `"All": false` unless Hydra is turned on with `true` or an options
 * object. The event's own keys win over the batch's.
 */
export function isHydraDisabled(own: unknown, batch: JsonObject | undefined): boolean {
  const ownIntegrations = isJsonObject(own) ? own : undefined;
  if (ownIntegrations === undefined && batch === undefined) return false;

  let hydra = integrationValue(ownIntegrations, batch, "Hydra");
  if (hydra === undefined) hydra = integrationValue(ownIntegrations, batch, "hydra");
  if (hydra === false) return true;

  if (integrationValue(ownIntegrations, batch, "All") === false) {
    return !(hydra === true || isJsonObject(hydra));
  }
  return false;
}

/**
 * Returns the filter reason of an event that gets 200 but is not stored, or undefined
 * when the event goes on to storage.
 */
export function filterReasonOf(type: EventType, integrations: unknown, batchIntegrations: JsonObject | undefined): FilterReason | undefined {
  if (!DELIVERED_TYPES.has(type)) return "type_not_supported";
  if (isHydraDisabled(integrations, batchIntegrations)) return "integration_disabled";
  return undefined;
}

/**
 * Returns whether a stored event is an Engage identify (an audience, journey step or
 * computed trait), which goes to the source's Engage stream, not to a lane. Engage track
 * events such as "Audience Entered" are ordinary tracks.
 */
export function isEngageIdentify(event: JsonObject): boolean {
  if (event.type !== "identify") return false;

  const context = event.context;
  if (!isJsonObject(context)) return false;
  const personas = context.personas;
  if (!isJsonObject(personas)) return false;

  const computationClass = personas.computation_class;
  return typeof computationClass === "string" && ENGAGE_COMPUTATION_CLASSES.has(computationClass);
}
