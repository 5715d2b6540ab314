// `cronflow.define()` and the workflow builder: identity, options, triggers and nodes, the
// handler registry and the module-level list of defined workflows.

import { CronflowDefinitionError, checkKeys, idProblem, show } from './errors.js';
import { wdoDuration } from './duration.js';
import { concurrency, debounce, hooks, rateLimit, retryPolicy } from './options.js';
import { Sequence } from './nodes.js';
import * as triggers from './triggers.js';

/** The WDO schema version the SDK writes. */
export const SCHEMA_VERSION = 1;

const DEFINE_KEYS = [
  'id',
  'name',
  'description',
  'version',
  'timeout',
  'stepTimeout',
  'concurrency',
  'rateLimit',
  'debounce',
  'retry',
  'hooks',
];

/**
 * Workflows defined so far, in definition order. Kept on `globalThis` so that several copies of
 * the SDK in one process (the worker runtime's and the user's) share one registry.
 */
const REGISTRY = Symbol.for('cronflow.workflows');
const registry = (globalThis[REGISTRY] ??= new Map());

/** What every builder of one workflow shares: node ids, handlers and error reporting. */
export class Scope {
  constructor(workflowId) {
    this.workflowId = workflowId;
    this.ids = new Map(); // node id -> call that declared it
    this.handlers = new Map(); // handler name -> function
    this.handlerCalls = new Map(); // handler name -> call that registered it
    this.generated = new Map(); // node type -> last generated number
  }

  fail(call, message) {
    throw new CronflowDefinitionError(`cronflow.define(${show(this.workflowId)})${call}: ${message}`);
  }

  claim(id, call) {
    const first = this.ids.get(id);
    if (first !== undefined) {
      this.fail(call, `duplicate name '${id}': node names must be unique in a workflow (already used by ${first})`);
    }
    this.ids.set(id, call);
  }

  /** A fresh id such as `parallel-1` for a node declared without a name. */
  generatedId(type) {
    let n = this.generated.get(type) ?? 0;
    let id;
    do {
      n += 1;
      id = `${type}-${n}`;
    } while (this.ids.has(id));
    this.generated.set(type, n);
    this.claim(id, `.${type}()`);
    return id;
  }

  register(name, fn, call) {
    const first = this.handlerCalls.get(name);
    if (first !== undefined) {
      this.fail(call, `handler name '${name}' is already used by ${first}; rename one of them`);
    }
    this.handlers.set(name, fn);
    this.handlerCalls.set(name, call);
  }
}

/** The fluent builder returned by `cronflow.define()`. */
export class WorkflowBuilder extends Sequence {
  constructor(definition) {
    const scope = new Scope(definition?.id);
    super(scope);
    const fail = (message) => scope.fail('', message);
    if (definition === null || typeof definition !== 'object') {
      throw new CronflowDefinitionError(
        `cronflow.define() expects an object such as { id: 'orders' }, found ${show(definition)}`,
      );
    }
    checkKeys(definition, DEFINE_KEYS, fail);
    const problem = idProblem(definition.id, 'id');
    if (problem) throw new CronflowDefinitionError(`cronflow.define(): ${problem}`);
    this.id = definition.id;
    this._head = { schema: SCHEMA_VERSION, id: definition.id };
    for (const key of ['version', 'name', 'description']) {
      let value = definition[key];
      if (value === undefined) continue;
      if (key === 'version' && typeof value === 'number') value = String(value);
      if (typeof value !== 'string') fail(`${key} must be a string, found ${show(value)}`);
      this._head[key] = value;
    }
    const options = {};
    if (definition.timeout !== undefined) {
      options.timeout = wdoDuration(definition.timeout, 'timeout', fail);
    }
    if (definition.stepTimeout !== undefined) {
      options.step_timeout = wdoDuration(definition.stepTimeout, 'stepTimeout', fail);
    }
    if (definition.retry !== undefined) options.retry = retryPolicy(definition.retry, fail);
    if (definition.concurrency !== undefined) {
      options.concurrency = concurrency(definition.concurrency, fail);
    }
    if (definition.rateLimit !== undefined) options.rate_limit = rateLimit(definition.rateLimit, fail);
    if (definition.debounce !== undefined) options.debounce = debounce(definition.debounce, fail);
    this._options = options;
    this._hooks = {};
    if (definition.hooks !== undefined) {
      for (const [hook, fn] of Object.entries(hooks(definition.hooks, fail))) {
        const name = `${this.id}.${hook}`;
        const key = hook === 'onSuccess' ? 'on_success' : 'on_failure';
        scope.register(name, fn, `.hooks.${hook}`);
        this._hooks[key] = name;
      }
    }
    this._triggers = [];
    if (registry.has(this.id)) {
      throw new CronflowDefinitionError(
        `cronflow.define(${show(this.id)}): a workflow with this id is already defined`,
      );
    }
    registry.set(this.id, this);
  }

  onSchedule(cron, options) {
    return this._trigger(`.onSchedule(${show(cron)})`, (fail) => triggers.schedule(cron, options, fail));
  }

  onInterval(every) {
    return this._trigger(`.onInterval(${show(every)})`, (fail) => triggers.interval(every, fail));
  }

  onWebhook(path, options) {
    return this._trigger(`.onWebhook(${show(path)})`, (fail) => triggers.webhook(path, options, fail));
  }

  onEvent(name) {
    return this._trigger(`.onEvent(${show(name)})`, (fail) => triggers.event(name, fail));
  }

  /** A polling trigger: `fn` returns new items; each item not seen before starts a run. */
  onPoll(name, fn, options) {
    const call = `.onPoll(${show(name)})`;
    return this._trigger(call, (fail) => {
      const problem = idProblem(name, 'the poll handler name');
      if (problem) fail(problem);
      if (typeof fn !== 'function') fail(`the poll handler must be a function, found ${show(fn)}`);
      const trigger = triggers.poll(name, options, fail);
      this._scope.register(name, fn, call);
      return trigger;
    });
  }

  manual() {
    return this._trigger('.manual()', () => ({ type: 'manual' }));
  }

  /** Handler name -> function, for the worker runtime. */
  handlers() {
    return new Map(this._scope.handlers);
  }

  /** The workflow definition object (a fresh plain JSON object, schema 1). */
  toWDO() {
    const nodes = this._finish();
    const wdo = { ...this._head };
    if (this._triggers.length) wdo.triggers = this._triggers;
    if (Object.keys(this._options).length) wdo.options = this._options;
    if (Object.keys(this._hooks).length) wdo.hooks = this._hooks;
    wdo.nodes = nodes;
    return structuredClone(wdo);
  }

  toJSON() {
    return this.toWDO();
  }

  _trigger(call, build) {
    const trigger = build((message) => this._scope.fail(call, message));
    this._triggers.push(trigger);
    return this;
  }
}

/** Every workflow defined so far (module-level registry), in definition order. */
export function workflows() {
  return [...registry.values()];
}

/** Defines a workflow and returns its fluent builder. */
export function define(definition) {
  return new WorkflowBuilder(definition);
}
