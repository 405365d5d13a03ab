/**
 * Converts an audience or computed trait name to the snake_case key that Hydra receives.
 *
 * The rule, step by step (docs/engage.md has the same table):
 * 1. Unicode NFKD, then remove the combining marks that follow a Latin letter, so "é"
 *    becomes "e" and "ﬁ" becomes "fi", while other scripts keep their marks.
 * 2. Insert "_" where a lowercase letter or a digit is followed by an uppercase letter
 *    ("orderCompleted" to "order_Completed"), and between an uppercase run and an
 *    uppercase letter that starts a lowercase word ("HTMLViewers" to "HTML_Viewers").
 * 3. Lowercase, then NFC.
 * 4. Replace every run of characters other than letters, combining marks and digits
 *    with one "_".
 * 5. Remove "_" at the start and the end.
 *
 * Digits stay attached to their letters ("30d" stays "30d"), so Engage's own keys, which
 * are already snake_case, come out unchanged. The output has no uppercase letter, no
 * run of two "_" and no "_" at either end, so applying the rule again changes nothing.
 * Returns "" when the name has no letter or digit.
 */
export function toSnakeCase(name: string): string {
  const folded = name.normalize("NFKD").replace(/(\p{Script=Latin})\p{M}+/gu, "$1");

  const split = folded
    .replace(/([\p{Ll}\p{N}]\p{M}*)(\p{Lu})/gu, "$1_$2")
    .replace(/(\p{Lu}\p{M}*)(\p{Lu}\p{M}*\p{Ll})/gu, "$1_$2");

  return split
    .toLowerCase()
    .normalize("NFC")
    .replace(/[^\p{L}\p{M}\p{N}]+/gu, "_")
    .replace(/^_+|_+$/g, "");
}
