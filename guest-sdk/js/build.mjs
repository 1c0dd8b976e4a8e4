// Builds a JavaScript guest: bundles app.js with the hostel SDK modules (esbuild), then makes a
// component of it (componentize-js). Run by `hostel build`:
//   node build.mjs APP_JS OUT_WASM WIT_DIR WORLD SDK_DIR TOOLS_DIR
import { writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [app, out, wit, world, sdk, tools] = process.argv.slice(2);
const load = (path) => import(pathToFileURL(join(tools, "node_modules", path)).href);
const esbuild = (await load("esbuild/lib/main.js")).default;
const { componentize } = await load("@bytecodealliance/componentize-js/src/componentize.js");

const work = await mkdtemp(join(tmpdir(), "hostel-js-"));
const bundle = join(work, "bundle.js");
await esbuild.build({
  entryPoints: [app],
  bundle: true,
  format: "esm",
  outfile: bundle,
  alias: { hostel: sdk },
  external: ["wasi:*", "hostel:*"],
  logLevel: "warning",
});
const { component } = await componentize({
  sourcePath: bundle,
  witPath: wit,
  worldName: world,
});
await writeFile(out, component);
