// Lists import cycles among the modules under a folder (default src; type-only imports count too,
// since they tie the modules' designs together) and exits 1 if there is one. Part of `npm run check`.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, dirname, resolve, relative } from 'node:path';
const root = resolve(process.argv[2] ?? 'src');
const files = [];
(function walk(d) {
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts') && !p.endsWith('.d.ts')) files.push(p);
  }
})(root);
const re = /(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
const graph = new Map();
for (const f of files) {
  const src = readFileSync(f, 'utf8');
  const deps = new Set();
  let m;
  while ((m = re.exec(src))) {
    const spec = m[1] ?? m[2];
    let t = resolve(dirname(f), spec.replace(/\.js$/, '.ts'));
    if (!existsSync(t) && existsSync(t.replace(/\.ts$/, '/index.ts'))) t = t.replace(/\.ts$/, '/index.ts');
    if (files.includes(t)) deps.add(t);
  }
  graph.set(f, [...deps]);
}
let idx = 0;
const st = [],
  on = new Set(),
  ix = new Map(),
  low = new Map(),
  sccs = [];
function sc(v) {
  ix.set(v, idx);
  low.set(v, idx++);
  st.push(v);
  on.add(v);
  for (const w of graph.get(v)) {
    if (!ix.has(w)) {
      sc(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (on.has(w)) low.set(v, Math.min(low.get(v), ix.get(w)));
  }
  if (low.get(v) === ix.get(v)) {
    const c = [];
    let w;
    do {
      w = st.pop();
      on.delete(w);
      c.push(w);
    } while (w !== v);
    if (c.length > 1) sccs.push(c);
  }
}
for (const f of files) if (!ix.has(f)) sc(f);
for (const c of sccs) console.log('cycle:', c.map((f) => relative(root, f)).join(' , '));
console.log(`${files.length} modules, ${sccs.length} cycles`);
process.exitCode = sccs.length ? 1 : 0;
