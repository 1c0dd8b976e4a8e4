// Generates the TypeScript declarations of every WIT interface a guest can import
// (`hostel:host/redis@0.1.0`, `wasi:keyvalue/store@0.2.0-draft2`, ...) with jco's type
// generator, from the binary WIT package `hostel` writes. Run by `hostel build`:
//   node types.mjs WIT_WASM WORLD OUT_DIR TOOLS_DIR
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const [witWasm, world, outDir, tools] = process.argv.slice(2);
const { $init, generateTypes } = await import(
  pathToFileURL(
    join(tools, "node_modules/@bytecodealliance/jco-transpile/vendor/js-component-bindgen-component.js"),
  ).href
);

await $init;
const files = generateTypes("handler", {
  wit: { tag: "binary", val: await readFile(witWasm) },
  world,
  guest: true,
  tlaCompat: false,
  features: { tag: "list", val: [] },
});
for (const [name, contents] of files) {
  const path = join(outDir, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, contents);
}
