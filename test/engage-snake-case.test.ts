import { describe, expect, it } from "vitest";

import { toSnakeCase } from "../src/engage/snake-case.js";
import { seededRandom } from "./engage-helpers.js";

const RULE_TABLE: [string, string][] = [
  ["Order Completed Last 30 Days", "order_completed_last_30_days"],
  ["trial_power_users", "trial_power_users"],
  ["reports_created_30d", "reports_created_30d"],
  ["churn_risk_accounts", "churn_risk_accounts"],
  ["orderCompleted", "order_completed"],
  ["HTMLViewers", "html_viewers"],
  ["iOS Users", "i_os_users"],
  ["version2Users", "version2_users"],
  ["  Trial -- Power / Users!  ", "trial_power_users"],
  ["Café Visitors", "cafe_visitors"],
  ["Zoë’s Öffnungen", "zoe_s_offnungen"],
  ["ﬁnance Leads", "finance_leads"],
  ["日本 のユーザー", "日本_のユーザー"],
  ["hindi हिन्दी users", "hindi_हिन्दी_users"],
  ["__already__snake__", "already_snake"],
  ["A", "a"],
  ["!!!", ""],
  ["", ""],
];

describe("toSnakeCase", () => {
  it.each(RULE_TABLE)("converts %j to %j", (name, expected) => {
    expect(toSnakeCase(name)).toBe(expected);
  });

  it.each(RULE_TABLE)("leaves the key of %j unchanged", (name) => {
    const once = toSnakeCase(name);
    expect(toSnakeCase(once)).toBe(once);
  });

  it("is idempotent on random names", () => {
    const random = seededRandom(7);
    const alphabet = ["a", "Z", "é", "E\u0301", "3", " ", "-", "_", "ß", "İ", "ǅ", "ﬀ", "日", "ー", "\u0301", "Σ", "ς", "ℂ", "\t", "Å"];
    for (let i = 0; i < 5_000; i++) {
      const length = 1 + Math.floor(random() * 12);
      const name = Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join("");
      const once = toSnakeCase(name);
      expect(toSnakeCase(once), `name ${JSON.stringify(name)}`).toBe(once);
    }
  });

  it("outputs no uppercase letters, double or edge underscores", () => {
    const names = RULE_TABLE.map(([name]) => name);
    for (const name of names) {
      const key = toSnakeCase(name);
      expect(key).not.toMatch(/\p{Lu}|__|^_|_$/u);
    }
  });
});
