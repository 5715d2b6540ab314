// The JavaScript side of benches/benches/node.rs: the core benchmarks' workflow
// (`linear_workflow("linear")` in benches/src/lib.rs) with JavaScript handlers. Ten steps
// `s0`..`s9` in sequence, each returning `null` at once, as the Rust `noop` handler does, so
// the engine stores the same events and outputs and the figures compare with `engine.rs`.
// The one difference is unavoidable: the SDK names each handler after its step (`s0`..`s9`)
// where the Rust workflow calls `noop` from every step.
import { cronflow } from '../../cronflow-executor-node/js/src/index.js';

const STEPS = 10;

const linear = cronflow.define({ id: 'linear' });
for (let i = 0; i < STEPS; i += 1) linear.step(`s${i}`, () => null);
