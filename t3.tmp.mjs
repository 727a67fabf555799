import { parseSync, loadModule } from 'libpg-query';
await loadModule();
for (const s of process.argv.slice(2)) { try { console.log(s, '=>', JSON.stringify(parseSync(s).stmts.map(x=>x.stmt))); } catch (e) { console.log(s, 'ERR', e.message); } }
