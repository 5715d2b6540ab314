// cronflow JavaScript SDK: define durable workflows; the Rust engine runs them.

import { define, workflows, SCHEMA_VERSION, WorkflowBuilder } from './builder.js';
import { CronflowDefinitionError } from './errors.js';
import { formatDuration, parseDuration } from './duration.js';

export const cronflow = Object.freeze({ define, workflows, SCHEMA_VERSION });

export {
  CronflowDefinitionError,
  SCHEMA_VERSION,
  WorkflowBuilder,
  define,
  formatDuration,
  parseDuration,
  workflows,
};
export default cronflow;
