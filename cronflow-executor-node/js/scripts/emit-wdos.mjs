// Prints a JSON array of the WDOs of `catalog.mjs` (used by the Rust test `tests/js_sdk.rs`).

import { cronflow } from '../src/index.js';
import './catalog.mjs';

process.stdout.write(`${JSON.stringify(cronflow.workflows().map((w) => w.toWDO()))}\n`);
