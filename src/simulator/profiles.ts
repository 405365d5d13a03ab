import { isNonEmptyString, isObject } from "./validate.js";

/** Track events counted by their `properties.eventFlag`. */
export interface FlagCounts {
  negative: number;
  neutral: number;
  positive: number;
}

/** Hydra's record of one person, keyed by userId, else anonymousId. */
export interface PersonRecord {
  id: string;
  userId?: string;
  anonymousIds: string[];
  /** Identify traits merged over time, later values over earlier ones; Engage computation keys excluded. */
  traits: Record<string, unknown>;
  companyId?: string;
  identifies: number;
  tracks: number;
  /** Track events by event name. */
  events: Record<string, number>;
  /** Track events by `properties.feature`, then by eventFlag. */
  features: Record<string, FlagCounts>;
  /** All track events by eventFlag. */
  eventFlags: FlagCounts;
  /** Engage audience memberships: computation_key to true or false. */
  audiences: Record<string, boolean>;
  /** Engage computed traits: computation_key to value. */
  computedTraits: Record<string, unknown>;
  firstSeenAt: string;
  lastSeenAt: string;
}

/** A company, from `traits.company` (keyed by domain, else id, else name) or from the email domain. */
export interface CompanyRecord {
  id: string;
  name?: string;
  domain?: string;
  source: "traits.company" | "email";
  traits: Record<string, unknown>;
  personIds: string[];
}

/** One membership change of an Engage audience. */
export interface AudienceChange {
  personId: string;
  member: boolean;
  messageId: string;
  at: string;
}

export interface AudienceRecord {
  key: string;
  computationId?: string;
  spaceId?: string;
  /** Persons whose latest identify set the audience key to true. */
  members: string[];
  entered: number;
  exited: number;
  /** Latest changes, oldest first, bounded by MAX_AUDIENCE_CHANGES. */
  changes: AudienceChange[];
}

const MAX_AUDIENCE_CHANGES = 1_000;

/** A validated identify or track event. */
type AcceptedEvent = Record<string, unknown> & { type: "identify" | "track"; messageId: string };

/**
 * Persons, companies and Engage audiences built from accepted events, the way Hydra
 * shows them to its users.
 */
export class ProfileStore {
  private persons = new Map<string, PersonRecord>();
  private companies = new Map<string, CompanyRecord>();
  private audiences = new Map<string, AudienceRecord & { memberSet: Map<string, boolean> }>();
  /** anonymousId to the userId an identify tied it to, so later anonymous events find the person. */
  private userIdOfAnonymousId = new Map<string, string>();

  /** Updates the event's person (and company and audiences); returns the person's id. */
  apply(event: AcceptedEvent, at: string): string {
    const person = this.personOf(event, at);

    if (event.type === "identify") {
      this.applyIdentify(person, event, at);
    } else {
      this.applyTrack(person, event);
    }
    return person.id;
  }

  get personCount(): number {
    return this.persons.size;
  }

  get companyCount(): number {
    return this.companies.size;
  }

  listPersons(): PersonRecord[] {
    return [...this.persons.values()].map((person) => structuredClone(person));
  }

  getPerson(id: string): PersonRecord | undefined {
    const person = this.persons.get(id) ?? this.persons.get(this.userIdOfAnonymousId.get(id) ?? "");
    return person && structuredClone(person);
  }

  listCompanies(): CompanyRecord[] {
    return [...this.companies.values()].map((company) => structuredClone(company));
  }

  listAudiences(): AudienceRecord[] {
    return [...this.audiences.values()].map(({ memberSet, ...audience }) => ({
      ...structuredClone(audience),
      members: [...memberSet].filter(([, member]) => member).map(([personId]) => personId),
    }));
  }

  clear(): void {
    this.persons.clear();
    this.companies.clear();
    this.audiences.clear();
    this.userIdOfAnonymousId.clear();
  }

  private personOf(event: AcceptedEvent, at: string): PersonRecord {
    const userId = isNonEmptyString(event.userId) ? event.userId : undefined;
    const anonymousId = isNonEmptyString(event.anonymousId) ? event.anonymousId : undefined;

    if (userId !== undefined && anonymousId !== undefined) this.userIdOfAnonymousId.set(anonymousId, userId);

    // NOTE: a person first seen by anonymousId keeps a record of its own after an
    // identify ties that anonymousId to a userId. Only later events go to the userId.
    const id = userId ?? this.userIdOfAnonymousId.get(anonymousId as string) ?? (anonymousId as string);

    let person = this.persons.get(id);
    if (!person) {
      person = {
        id,
        userId: userId ?? (id === anonymousId ? undefined : id),
        anonymousIds: [],
        traits: {},
        identifies: 0,
        tracks: 0,
        events: {},
        features: {},
        eventFlags: emptyFlagCounts(),
        audiences: {},
        computedTraits: {},
        firstSeenAt: at,
        lastSeenAt: at,
      };
      this.persons.set(id, person);
    }

    if (anonymousId !== undefined && !person.anonymousIds.includes(anonymousId)) person.anonymousIds.push(anonymousId);
    person.lastSeenAt = at;
    return person;
  }

  private applyIdentify(person: PersonRecord, event: AcceptedEvent, at: string): void {
    person.identifies += 1;

    const traits = isObject(event.traits) ? { ...event.traits } : {};
    const context = isObject(event.context) ? event.context : {};
    const personas = isObject(context.personas) ? context.personas : undefined;

    if (personas && isNonEmptyString(personas.computation_key) && personas.computation_key in traits) {
      const key = personas.computation_key;
      const value = traits[key];
      delete traits[key];

      if (typeof value === "boolean") {
        this.applyMembership(person, personas, key, value, event.messageId, at);
      } else {
        person.computedTraits[key] = value;
      }
    }

    Object.assign(person.traits, traits);
    this.linkCompany(person, traits);
  }

  private applyMembership(
    person: PersonRecord,
    personas: Record<string, unknown>,
    key: string,
    member: boolean,
    messageId: string,
    at: string,
  ): void {
    person.audiences[key] = member;

    let audience = this.audiences.get(key);
    if (!audience) {
      audience = { key, members: [], entered: 0, exited: 0, changes: [], memberSet: new Map() };
      this.audiences.set(key, audience);
    }
    if (isNonEmptyString(personas.computation_id)) audience.computationId = personas.computation_id;
    if (isNonEmptyString(personas.space_id)) audience.spaceId = personas.space_id;

    const before = audience.memberSet.get(person.id) ?? false;
    audience.memberSet.set(person.id, member);
    if (member && !before) audience.entered += 1;
    if (!member && before) audience.exited += 1;

    audience.changes.push({ personId: person.id, member, messageId, at });
    if (audience.changes.length > MAX_AUDIENCE_CHANGES) audience.changes.shift();
  }

  private linkCompany(person: PersonRecord, traits: Record<string, unknown>): void {
    const company = isObject(traits.company) ? traits.company : undefined;
    let record: CompanyRecord | undefined;

    if (company) {
      const id = [company.domain, company.id, company.name].find(isNonEmptyString)?.toLowerCase();
      if (id !== undefined) {
        record = this.companyRecord(id, "traits.company");
        Object.assign(record.traits, company);
        if (isNonEmptyString(company.name)) record.name = company.name;
        if (isNonEmptyString(company.domain)) record.domain = company.domain.toLowerCase();
      }
    } else if (person.companyId === undefined && isNonEmptyString(traits.email) && traits.email.includes("@")) {
      // The email domain is used only until a company is known, because a second
      // address on the profile (a personal one, say) must not move the person.
      const domain = traits.email.slice(traits.email.lastIndexOf("@") + 1).toLowerCase();
      if (domain.length > 0) {
        record = this.companies.get(domain) ?? this.companyRecord(domain, "email");
        record.domain ??= domain;
      }
    }

    if (!record) return;

    if (person.companyId !== undefined && person.companyId !== record.id) {
      const previous = this.companies.get(person.companyId);
      if (previous) previous.personIds = previous.personIds.filter((id) => id !== person.id);
    }
    person.companyId = record.id;
    if (!record.personIds.includes(person.id)) record.personIds.push(person.id);
  }

  private companyRecord(id: string, source: CompanyRecord["source"]): CompanyRecord {
    let record = this.companies.get(id);
    if (!record) {
      record = { id, source, traits: {}, personIds: [] };
      this.companies.set(id, record);
    } else if (source === "traits.company") {
      record.source = source;
    }
    return record;
  }

  private applyTrack(person: PersonRecord, event: AcceptedEvent): void {
    person.tracks += 1;

    const name = event.event as string;
    person.events[name] = (person.events[name] ?? 0) + 1;

    const properties = event.properties as Record<string, unknown>;
    const flag = properties.eventFlag as keyof FlagCounts;
    person.eventFlags[flag] += 1;

    if (isNonEmptyString(properties.feature)) {
      const counts = (person.features[properties.feature] ??= emptyFlagCounts());
      counts[flag] += 1;
    }
  }
}

function emptyFlagCounts(): FlagCounts {
  return { negative: 0, neutral: 0, positive: 0 };
}
