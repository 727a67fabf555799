#!/usr/bin/env node
// The CLI lives in the compiled tree; `npm run build` produces it.
import { main } from '../dist/src/cli/main.js';

main(process.argv).catch((err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
