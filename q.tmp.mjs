import { Classifier } from './dist/src/pg/classifier/classify.js';
const c = new Classifier();
for (const s of process.argv.slice(2)) console.log(JSON.stringify(s), JSON.stringify(c.classify(s)));
