/** Entry point of a data-plane worker process (forked by controller.ts; see worker.ts). */
import { runWorker } from './worker.js';

runWorker();
