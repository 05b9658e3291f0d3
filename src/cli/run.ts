// Runs the CLI from source (`node --import tsx src/cli/run.ts ...`), for tests and development;
// bin/atrest.js runs the compiled dist/cli/main.js the same way.
import { main } from './main.js';

await main(process.argv);
