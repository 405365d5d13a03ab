import { z } from "zod";

/** A Segment source: the write key it sends and the Hydra API key its events go out with. */
export const sourceSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "name must be 1 to 64 letters, digits, '_' or '-'"),
  writeKey: z.string().min(1, "writeKey must be a non-empty string"),
  hydraApiKey: z.string().min(1, "hydraApiKey must be a non-empty string"),
});

export type Source = z.infer<typeof sourceSchema>;

export const sourcesFileSchema = z
  .array(sourceSchema)
  .min(1, "the list must hold at least one source")
  .superRefine((sources, ctx) => {
    const names = new Set<string>();
    const writeKeys = new Set<string>();
    sources.forEach((source, index) => {
      if (names.has(source.name)) {
        ctx.addIssue({ code: "custom", path: [index, "name"], message: `name "${source.name}" is used twice` });
      }
      if (writeKeys.has(source.writeKey)) {
        ctx.addIssue({ code: "custom", path: [index, "writeKey"], message: "the same writeKey is used twice" });
      }
      names.add(source.name);
      writeKeys.add(source.writeKey);
    });
  });
