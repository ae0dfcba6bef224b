// Two single-file bundles: the CLI (small, starts fast) and the daemon, which the CLI's `daemon`
// command loads only when asked. Each reads one file at start-up, not a node_modules tree.
// dist/phyllome.mjs is a two-line launcher that turns on V8's compile cache before loading the CLI.
// dist/web is the web UI, static files the daemon serves.
import { rename, rm, writeFile } from 'node:fs/promises';
import { build } from 'esbuild';
import { build as buildWeb } from 'vite';

/**
 * Vite empties its output folder first: built aside and swapped in, dist/web never stands empty
 * under a daemon serving it (a build during tests, or beside a running phyllomed).
 */
async function buildWebAtomically() {
  const next = `dist/.web-${process.pid}`;
  const old = `${next}-old`;
  await buildWeb({ configFile: 'web/vite.config.ts', logLevel: 'warn', build: { outDir: `../${next}` } });
  await rename('dist/web', old).catch((e) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await rename(next, 'dist/web');
  await rm(old, { recursive: true, force: true });
}

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: 'linked',
  // Minified source is half the memory the daemon keeps for it; names stay for readable stack traces.
  minify: true,
  keepNames: true,
  legalComments: 'none',
  // Some CommonJS dependencies call require(); give the ESM bundles one.
  banner: {
    js: "import { createRequire as __phyllomeRequire } from 'node:module'; const require = __phyllomeRequire(import.meta.url);",
  },
  logLevel: 'warning',
};

await Promise.all([
  build({
    ...common,
    entryPoints: ['src/cli/main.ts'],
    outfile: 'dist/cli.mjs',
    external: ['./phyllomed.mjs'],
  }),
  build({ ...common, entryPoints: ['src/daemon/entry.ts'], outfile: 'dist/phyllomed.mjs' }),
  // The web UI: static files in dist/web, which the daemon serves (src/daemon/ui.ts).
  buildWebAtomically(),
]);
await writeFile(
  'dist/phyllome.mjs',
  "import { enableCompileCache } from 'node:module';\nenableCompileCache?.();\nawait import('./cli.mjs');\n",
);
