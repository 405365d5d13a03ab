/**
 * Summarizes a V8 CPU profile written by `node --cpu-prof`: the functions and the files
 * with the most self time, and the JavaScript callers of the native functions, so a
 * missed benchmark target can be traced to code.
 *
 * Run: node dist/bench/cpu-profile-summary.js FILE.cpuprofile [--top 25]
 * Paths under this repository are shown relative to it; node_modules paths are cut to
 * the package name.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { formatNumber, printTable, REPOSITORY, runMain } from "./support/harness.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Shortens a script URL to a path inside the repository, a package name, or a Node.js internal module. */
function shortLocation(url: string): string {
  if (url === "") return "(native or V8)";
  const path = url.replace(/^file:\/\//, "");
  const modules = path.lastIndexOf("/node_modules/");
  if (modules >= 0) {
    const rest = path.slice(modules + "/node_modules/".length).split("/");
    return rest[0].startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (path.startsWith(`${REPOSITORY}/`)) return path.slice(REPOSITORY.length + 1);
  return path;
}

runMain(async () => {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" } } });
  const file = positionals[0];
  if (!file) throw new Error("Missing FILE: give the path of a .cpuprofile written by node --cpu-prof.");
  const top = Number(values.top);

  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));

  // Self time of a node: the time deltas of the samples taken in it.
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const totalUs = profile.endTime - profile.startTime;

  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

  // Time spent in native code (socket writes, regular expressions...) goes to the
  // nearest function up the stack that belongs to the application or a package, past
  // Node.js's own modules, which shows who asked for it.
  const isRuntimeFrame = (url: string) => url === "" || url.startsWith("node:");
  const nativeByCaller = new Map<string, number>();
  const describe = (frame: ProfileNode["callFrame"]) => `${frame.functionName || "(anonymous)"} ${shortLocation(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`;

  const byFunction = new Map<string, number>();
  const byLocation = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const location = shortLocation(frame.url);
    const name = describe(frame);
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    byLocation.set(location, (byLocation.get(location) ?? 0) + us);

    if (frame.url === "" && !["(idle)", "(program)", "(garbage collector)", "(root)"].includes(frame.functionName)) {
      let caller = parentOf.get(id);
      while (caller !== undefined && isRuntimeFrame(byId.get(caller)!.callFrame.url)) caller = parentOf.get(caller);
      const key = `${frame.functionName || "(anonymous)"} <- ${caller === undefined ? "(no JavaScript caller)" : describe(byId.get(caller)!.callFrame)}`;
      nativeByCaller.set(key, (nativeByCaller.get(key) ?? 0) + us);
    }
  }

  // Shares are of the busy time, so that a process that waited between load phases is
  // compared with itself at work.
  const idleUs = byFunction.get("(idle) (native or V8)") ?? 0;
  const busyUs = totalUs - idleUs;
  byFunction.delete("(idle) (native or V8)");
  byLocation.set("(native or V8)", (byLocation.get("(native or V8)") ?? 0) - idleUs);
  const rows = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => [name, `${formatNumber(us / 1_000)} ms`, `${formatNumber((100 * us) / busyUs, 1)}%`]);

  console.log(`${file}: ${formatNumber(totalUs / 1_000)} ms profiled, ${formatNumber(busyUs / 1_000)} ms of it busy (not idle), ${profile.samples.length} samples`);
  console.log("");
  printTable(["function (self time)", "self", "share of busy"], rows(byFunction));
  console.log("");
  printTable(["file or package (self time)", "self", "share of busy"], rows(byLocation));
  console.log("");
  printTable(["native function <- nearest application or package caller", "self", "share of busy"], rows(nativeByCaller));
});
