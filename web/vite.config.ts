import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Static files the daemon serves itself (src/daemon/ui.ts): one page, hashed assets, no dev server needed.
export default defineConfig({
  root: import.meta.dirname,
  plugins: [react()],
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    // The daemon sends the page with a CSP of 'self' only: no inlined scripts or data: fonts.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
    // Its timing report (most of a build is PatternFly's CSS) is noise in `npm run build`.
    rolldownOptions: { checks: { bundlerTimings: false } },
  },
});
