// Copies the repository's tollgate.proto into the package before `npm pack` /
// `npm publish` (prepack), and removes the copy afterwards (postpack), so a
// checkout always loads ../../proto and never a stale copy.

import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bundled = path.join(packageDir, "proto");

if (process.argv.includes("--remove")) {
  rmSync(bundled, { recursive: true, force: true });
} else {
  const source = path.resolve(packageDir, "..", "..", "proto", "tollgate", "v1", "tollgate.proto");
  const target = path.join(bundled, "tollgate", "v1", "tollgate.proto");
  mkdirSync(path.dirname(target), { recursive: true });
  copyFileSync(source, target);
}
