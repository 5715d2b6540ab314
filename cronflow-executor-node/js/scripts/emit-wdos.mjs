// Prints a JSON array of `{ wdo, handlers }` for the workflows of `catalog.mjs`: each WDO and
// the names of the handlers the SDK registered for it (used by the Rust test `tests/js_sdk.rs`).

import { cronflow } from '../src/index.js';
import './catalog.mjs';

const out = cronflow.workflows().map((w) => ({ wdo: w.toWDO(), handlers: [...w.handlers().keys()] }));
process.stdout.write(`${JSON.stringify(out)}\n`);
