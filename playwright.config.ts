import { defineConfig } from '@playwright/test';

// The web UI in Debian's Chromium (never a downloaded browser), against a real daemon and QEMU.
export default defineConfig({
  testDir: 'test/e2e',
  outputDir: 'test-results/e2e',
  globalSetup: './test/e2e/global-setup.ts',
  // One daemon and TCG guest at a time on a small machine, and a hard bound on the whole run.
  workers: 1,
  timeout: 180_000,
  globalTimeout: 480_000,
  retries: 0,
  use: {
    headless: true,
    launchOptions: { executablePath: '/usr/bin/chromium' },
    viewport: { width: 1280, height: 720 },
    // A step that cannot happen fails the test in seconds, not at its whole timeout.
    actionTimeout: 30_000,
    screenshot: 'on',
  },
});
