import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // .tsx: the web UI's component tests (type-checked with web/tsconfig.json).
          include: ['test/unit/**/*.test.{ts,tsx}'],
          testTimeout: 30_000,
          // PatternFly's modules import their CSS: its ES modules go through Vite, which stubs CSS.
          server: { deps: { inline: [/@patternfly\//] } },
        },
        resolve: {
          alias: [
            {
              find: /^@patternfly\/(react-core|react-table)$/,
              replacement: '@patternfly/$1/dist/esm/index.js',
            },
          ],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/integration/global-setup.ts'],
          // Real QEMU guests under TCG on 2 cores: one file at a time keeps boots predictable.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
