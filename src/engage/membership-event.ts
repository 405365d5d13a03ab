import { ENTRY_FIELD_EVENT } from "../types.js";
import { InvalidEngageEventError } from "./errors.js";
import { toSnakeCase } from "./snake-case.js";

/** Computation classes whose value is a membership: true when the user enters, false when the user leaves. */
const MEMBERSHIP_CLASSES: ReadonlySet<string> = new Set(["audience", "journey_step"]);

/** Computation classes whose value is a computed trait of any JSON type. */
const TRAIT_CLASSES: ReadonlySet<string> = new Set(["trait", "computed_trait"]);

/** Maximum length of an email kept with a membership; longer ones are dropped as invalid. */
const MAX_EMAIL_LENGTH = 320;

/** One Engage identify reduced to what the audience state stores. */
export interface MembershipChange {
  entryId: string;
  /** The snake_case audience or computed trait key, the trait name Hydra receives. */
  audience: string;
  /** True for audiences and journey steps, whose false value means "not a member". */
  isMembership: boolean;
  /** Member field of the state hashes: `u:<userId>`, else `a:<anonymousId>`. */
  member: string;
  /** The value as JSON text: "true"/"false" for a membership, any JSON for a computed trait. */
  valueJson: string;
  /** The event's `traits.email`, or "" when it had none. */
  email: string;
  /** The event's timestamp in epoch ms, 0 when it had none; an older event never overwrites a newer one. */
  timestampMs: number;
  /** The event's `context.personas` as JSON text, with `computation_key` replaced by the snake_case key. */
  personasJson: string;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Returns the value of a field of a stream entry, whose fields come as a flat name/value list. */
function fieldValue(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === name) return fields[i + 1];
  }
  return undefined;
}

function memberOf(event: JsonObject): string | undefined {
  if (typeof event.userId === "string" && event.userId !== "") return `u:${event.userId}`;
  if (typeof event.anonymousId === "string" && event.anonymousId !== "") return `a:${event.anonymousId}`;
  return undefined;
}

function emailOf(traits: JsonObject): string {
  const email = traits.email;
  if (typeof email !== "string") return "";

  const trimmed = email.trim();
  // Tabs would break the `current` record format, and control characters have no place in an address.
  if (trimmed.length > MAX_EMAIL_LENGTH || /\p{Cc}/u.test(trimmed)) return "";
  return trimmed;
}

function timestampOf(event: JsonObject): number {
  for (const field of ["timestamp", "receivedAt"]) {
    const text = event[field];
    if (typeof text !== "string") continue;

    const ms = Date.parse(text);
    if (Number.isFinite(ms)) return ms;
  }
  return 0;
}

/**
 * Reads an Engage stream entry (fields `u` and `e`) as a membership or computed trait
 * change. Returns an InvalidEngageEventError, without throwing, for an entry that is
 * not a usable Engage identify.
 *
 * The trait value is `traits[computation_key]`. Where the key is not snake_case (an
 * audience name such as "Order Completed Last 30 Days"), `traits[<snake_case key>]` is
 * read when the raw name is missing, and only the snake_case key goes further.
 */
export function parseEngageEntry(entryId: string, fields: string[]): MembershipChange | InvalidEngageEventError {
  const invalid = (reason: InvalidEngageEventError["reason"], detail: string) => new InvalidEngageEventError(reason, entryId, detail);

  let event: unknown;
  try {
    event = JSON.parse(fieldValue(fields, ENTRY_FIELD_EVENT) ?? "");
  } catch (error) {
    return invalid("invalid_json", `field "${ENTRY_FIELD_EVENT}" is not JSON (${(error as Error).message})`);
  }

  if (!isObject(event) || event.type !== "identify") {
    return invalid("not_identify", "only identify events carry audience memberships and computed traits");
  }

  const member = memberOf(event);
  if (member === undefined) return invalid("missing_user", "the event has neither userId nor anonymousId");

  const personas = isObject(event.context) ? event.context.personas : undefined;
  if (!isObject(personas)) return invalid("missing_personas", "context.personas is missing");

  const computationClass = personas.computation_class;
  const isMembership = typeof computationClass === "string" && MEMBERSHIP_CLASSES.has(computationClass);
  if (!isMembership && !(typeof computationClass === "string" && TRAIT_CLASSES.has(computationClass))) {
    return invalid("unknown_computation_class", `computation_class ${JSON.stringify(computationClass)} is not audience, journey_step, trait or computed_trait`);
  }

  const rawKey = personas.computation_key;
  if (typeof rawKey !== "string" || rawKey === "") return invalid("missing_computation_key", "context.personas.computation_key is missing");

  const audience = toSnakeCase(rawKey);
  if (audience === "") return invalid("invalid_computation_key", `computation_key ${JSON.stringify(rawKey)} has no letter or digit`);

  const traits = isObject(event.traits) ? event.traits : {};
  const value = Object.hasOwn(traits, rawKey) ? traits[rawKey] : traits[audience];
  if (value === undefined) return invalid("missing_value", `traits has no value for ${JSON.stringify(rawKey)}`);
  if (isMembership && typeof value !== "boolean") {
    return invalid("invalid_audience_value", `traits.${audience} is ${JSON.stringify(value)}, expected true or false`);
  }

  return {
    entryId,
    audience,
    isMembership,
    member,
    valueJson: JSON.stringify(value),
    email: emailOf(traits),
    timestampMs: timestampOf(event),
    // Only the snake_case key goes to Hydra, in the traits and in context.personas alike.
    personasJson: JSON.stringify({ ...personas, computation_key: audience }),
  };
}
