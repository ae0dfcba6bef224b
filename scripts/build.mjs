// Bundles the CLI and daemon into one ESM file so start-up reads one file, not a node_modules tree.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/phyllome.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: 'linked',
  legalComments: 'none',
  // Some CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __phyllomeRequire } from 'node:module'; const require = __phyllomeRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
