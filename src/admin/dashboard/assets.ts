/**
 * The dashboard's files, by URL path: the page, its script and style (TypeScript modules
 * exporting strings, so `tsc` carries them into dist/ like any code), and uPlot's script
 * and CSS read once from the installed `uplot` package. No CDN: it works offline.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DASHBOARD_CSS } from './style.js';
import { DASHBOARD_HTML } from './page.js';
import { DASHBOARD_JS } from './client.js';

/** A file the admin server answers with. */
export interface Asset {
  status: number;
  type: string;
  body: string | Buffer;
}

const require = createRequire(import.meta.url);

/** Reads a file of the `uplot` package; a missing package becomes an asset explaining it. */
function uplotFile(file: string, type: string): Asset {
  try {
    return { status: 200, type, body: readFileSync(require.resolve(`uplot/dist/${file}`)) };
  } catch (err) {
    const msg = `uplot is not installed (${(err as Error).message.split('\n')[0]}); run npm install in rwsplit's directory`;
    return { status: 500, type: 'text/plain; charset=utf-8', body: `${msg}\n` };
  }
}

export function loadDashboardAssets(): Map<string, Asset> {
  const text = (type: string, body: string): Asset => ({ status: 200, type, body });
  return new Map([
    ['/', text('text/html; charset=utf-8', DASHBOARD_HTML)],
    ['/assets/dashboard.js', text('text/javascript; charset=utf-8', DASHBOARD_JS)],
    ['/assets/dashboard.css', text('text/css; charset=utf-8', DASHBOARD_CSS)],
    ['/assets/uPlot.iife.min.js', uplotFile('uPlot.iife.min.js', 'text/javascript; charset=utf-8')],
    ['/assets/uPlot.min.css', uplotFile('uPlot.min.css', 'text/css; charset=utf-8')],
  ]);
}
