// The node builders shared by a workflow and by the bodies and branches of composite nodes.
// Each call validates its arguments at once and appends a WDO node (snake_case, as the Rust
// model reads it); the functions go into the workflow's handler registry under their names.

import { checkKeys, idProblem, show } from './errors.js';
import { parseDuration, formatDuration, wdoDuration } from './duration.js';
import { jsonValue, onTimeout, positiveInt, retryPolicy } from './options.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const TASK_KEYS = ['timeout', 'retry', 'onError'];

/** The `.while()` iteration cap when `maxIterations` is not given. */
export const DEFAULT_MAX_ITERATIONS = 1000;

/** A sequence of nodes being built; `scope` is shared by the whole workflow. */
export class Sequence {
  /** @param {import('./builder.js').Scope} scope */
  constructor(scope) {
    this._scope = scope;
    this._nodes = [];
    this._ifs = []; // open `.if()` frames: { node, call, current }
    this._last = null; // { node, call } of the last node added by a call on this builder
  }

  step(name, fn, options) {
    return this._task('step', name, fn, options);
  }

  action(name, fn, options) {
    return this._task('action', name, fn, options);
  }

  /** Sets the retry policy of the last step or action. */
  retry(policy) {
    const task = this._lastTask('retry');
    task.node.retry = retryPolicy(policy, this._failer(`${task.call}.retry()`));
    return this;
  }

  /** Sets the timeout of the last step or action. */
  timeout(duration) {
    const task = this._lastTask('timeout');
    task.node.timeout = wdoDuration(duration, 'timeout', this._failer(`${task.call}.timeout()`));
    return this;
  }

  /**
   * Sets the error handler of the last step or action (handler name `<id>.onError`): called
   * with `ctx.error` once the attempts are exhausted; its output stands in for the node's.
   */
  onError(fn) {
    const task = this._lastTask('onError');
    this._onError(task.node, fn, `${task.call}.onError()`);
    return this;
  }

  if(name, condition) {
    const call = `.if(${show(name)})`;
    const id = this._id(name, call);
    const node = { type: 'if', id, branches: [] };
    this._push(node, call);
    const frame = { node, call, current: null };
    this._ifs.push(frame);
    this._branch(frame, condition, call);
    return this;
  }

  elseIf(name, condition) {
    if (typeof name === 'function' && condition === undefined) [name, condition] = [undefined, name];
    const call = name === undefined ? '.elseIf()' : `.elseIf(${show(name)})`;
    const frame = this._openIf(call);
    if (frame.node.else) this._fail(call, `comes after .else() of ${frame.call}`);
    this._closeBranch(frame, call);
    this._branch(frame, condition, call);
    return this;
  }

  else() {
    const frame = this._openIf('.else()');
    if (frame.node.else) this._fail('.else()', `${frame.call} already has an .else()`);
    this._closeBranch(frame, '.else()');
    frame.node.else = [];
    frame.current = frame.node.else;
    return this;
  }

  endIf() {
    const frame = this._openIf('.endIf()');
    this._closeBranch(frame, '.endIf()');
    this._ifs.pop();
    this._last = { node: frame.node, call: frame.call };
    return this;
  }

  parallel(name, branches) {
    return this._branches('parallel', name, branches);
  }

  race(name, branches) {
    return this._branches('race', name, branches);
  }

  forEach(name, items, body, options) {
    const call = `.forEach(${show(name)})`;
    const id = this._id(name, call);
    const opts = checkKeys(options, ['concurrency'], this._failer(call));
    const node = { type: 'for_each', id, items: this._handler(`${id}.items`, items, 'items', call) };
    node.nodes = this._body(body, call);
    if (opts.concurrency !== undefined) {
      node.concurrency = positiveInt(opts.concurrency, 'concurrency', this._failer(call));
    }
    return this._push(node, call);
  }

  batch(name, items, size, body) {
    const call = `.batch(${show(name)})`;
    const id = this._id(name, call);
    const node = { type: 'batch', id, items: this._handler(`${id}.items`, items, 'items', call) };
    node.size = positiveInt(size, 'size', this._failer(call));
    node.nodes = this._body(body, call);
    return this._push(node, call);
  }

  while(name, condition, body, options) {
    const call = `.while(${show(name)})`;
    const id = this._id(name, call);
    const opts = checkKeys(options, ['maxIterations'], this._failer(call));
    const node = {
      type: 'while',
      id,
      condition: this._handler(`${id}.condition`, condition, 'condition', call),
    };
    node.nodes = this._body(body, call);
    node.max_iterations = positiveInt(
      opts.maxIterations ?? DEFAULT_MAX_ITERATIONS,
      'maxIterations',
      this._failer(call),
    );
    return this._push(node, call);
  }

  /** Sleeps for a duration ("10m", milliseconds) or until a Date / RFC 3339 time. */
  sleep(name, durationOrDate) {
    const call = `.sleep(${show(name)})`;
    const id = this._id(name, call);
    const fail = this._failer(call);
    const value = durationOrDate;
    const node = { type: 'sleep', id };
    if (value instanceof Date) {
      if (Number.isNaN(value.getTime())) fail('the Date is invalid');
      node.until = value.toISOString();
    } else if (typeof value === 'string' && RFC3339.test(value.trim())) {
      if (Number.isNaN(Date.parse(value))) fail(`${show(value)} is not a valid time`);
      node.until = value.trim();
    } else {
      try {
        node.duration = formatDuration(parseDuration(value));
      } catch (e) {
        fail(
          `expected a duration such as "10m", milliseconds, a Date or an RFC 3339 time such as ` +
            `"2030-01-31T09:00:00Z": ${e.message}`,
        );
      }
    }
    return this._push(node, call);
  }

  /** Waits for a human to resume the run (`onPause` receives the resume token). */
  pause(name, options) {
    const call = `.pause(${show(name)})`;
    const id = this._id(name, call);
    const fail = this._failer(call);
    const opts = checkKeys(options, ['timeout', 'onTimeout', 'onPause'], fail);
    const node = { type: 'pause', id };
    if (opts.timeout !== undefined) node.timeout = wdoDuration(opts.timeout, 'timeout', fail);
    node.on_timeout = onTimeout(opts.onTimeout, fail);
    if (opts.onPause !== undefined) {
      node.on_pause = this._handler(`${id}.onPause`, opts.onPause, 'onPause', call);
    }
    return this._push(node, call);
  }

  humanInTheLoop(name, options) {
    return this.pause(name, options);
  }

  waitForEvent(name, event, options) {
    const call = `.waitForEvent(${show(name)})`;
    const id = this._id(name, call);
    const fail = this._failer(call);
    if (typeof event !== 'string' || event.trim() === '') {
      fail(`the event name must be a non-empty string, found ${show(event)}`);
    }
    const opts = checkKeys(options, ['match', 'timeout', 'onTimeout'], fail);
    const node = { type: 'wait_for_event', id, event };
    if (opts.match !== undefined) {
      if (opts.match === null || typeof opts.match !== 'object' || Array.isArray(opts.match)) {
        fail(`match must be an object of field values, found ${show(opts.match)}`);
      }
      node.match = jsonValue(opts.match, 'match', fail);
    }
    if (opts.timeout !== undefined) node.timeout = wdoDuration(opts.timeout, 'timeout', fail);
    node.on_timeout = onTimeout(opts.onTimeout, fail);
    return this._push(node, call);
  }

  /** Runs another workflow (its id, or the builder returned by `cronflow.define`). */
  subflow(name, workflow, options) {
    const call = `.subflow(${show(name)})`;
    const id = this._id(name, call);
    const fail = this._failer(call);
    const target = typeof workflow === 'object' && workflow !== null ? workflow.id : workflow;
    const problem = idProblem(target, 'the workflow id');
    if (problem) fail(problem);
    const opts = checkKeys(options, ['payload'], fail);
    const node = { type: 'subflow', id, workflow: target };
    if (opts.payload !== undefined) {
      node.payload = this._handler(`${id}.payload`, opts.payload, 'payload', call);
    }
    return this._push(node, call);
  }

  cancel(name, reason) {
    const call = `.cancel(${show(name)})`;
    const id = this._id(name, call);
    const node = { type: 'cancel', id };
    if (reason !== undefined) {
      if (typeof reason !== 'string') this._fail(call, `the reason must be a string, found ${show(reason)}`);
      node.reason = reason;
    }
    return this._push(node, call);
  }

  // ---- internals ----

  _task(type, name, fn, options) {
    const call = `.${type}(${show(name)})`;
    const id = this._id(name, call);
    const fail = this._failer(call);
    const opts = checkKeys(options, TASK_KEYS, fail);
    const node = { type, id, handler: this._handler(id, fn, 'the handler', call) };
    if (opts.timeout !== undefined) node.timeout = wdoDuration(opts.timeout, 'timeout', fail);
    if (opts.retry !== undefined) node.retry = retryPolicy(opts.retry, fail);
    if (opts.onError !== undefined) this._onError(node, opts.onError, call, 'onError');
    return this._push(node, call);
  }

  _onError(node, fn, call, what = 'the error handler') {
    if (node.on_error !== undefined) {
      this._fail(call, `${node.type} '${node.id}' already has an error handler (onError is given once)`);
    }
    node.on_error = this._handler(`${node.id}.onError`, fn, what, call);
  }

  _branches(type, name, branches) {
    if (Array.isArray(name) && branches === undefined) [name, branches] = [undefined, name];
    const call = name === undefined ? `.${type}()` : `.${type}(${show(name)})`;
    const id = name === undefined ? this._scope.generatedId(type) : this._id(name, call);
    if (!Array.isArray(branches) || branches.length === 0) {
      this._fail(call, `expects a non-empty array of branch functions, such as [(b) => b.step('a', fn)]`);
    }
    const node = { type, id, branches: [] };
    branches.forEach((branch, i) => {
      node.branches.push({ nodes: this._body(branch, `${call} branch ${i}`) });
    });
    return this._push(node, call);
  }

  /** Runs `build(sequence)` on a fresh sequence and returns its checked nodes. */
  _body(build, call) {
    if (typeof build !== 'function') {
      this._fail(call, `expects a function that adds the nodes, such as (b) => b.step('a', fn), found ${show(build)}`);
    }
    const body = new Sequence(this._scope);
    const result = build(body);
    if (result && typeof result.then === 'function') {
      this._fail(call, 'the builder function must add its nodes synchronously, not return a promise');
    }
    return body._finish(call);
  }

  /** The nodes, after checking that every `.if()` is closed and that there is a node. */
  _finish(call) {
    const open = this._ifs.at(-1);
    if (open) this._fail(open.call, `is never closed with .endIf()${call ? ` inside ${call}` : ''}`);
    if (this._nodes.length === 0) {
      this._fail(call ?? '', call ? 'has no nodes: add at least one step' : 'the workflow has no steps');
    }
    return this._nodes;
  }

  _push(node, call) {
    const target = this._ifs.length ? this._ifs.at(-1).current : this._nodes;
    target.push(node);
    this._last = { node, call };
    return this;
  }

  _branch(frame, condition, call) {
    const i = frame.node.branches.length;
    const handler = this._handler(`${frame.node.id}.condition.${i}`, condition, 'the condition', call);
    const branch = { condition: handler, nodes: [] };
    frame.node.branches.push(branch);
    frame.current = branch.nodes;
  }

  _closeBranch(frame, call) {
    if (frame.current.length === 0) {
      this._fail(call, `the preceding branch of ${frame.call} is empty: add a step before ${call}`);
    }
  }

  _openIf(call) {
    const frame = this._ifs.at(-1);
    if (!frame) this._fail(call, 'has no matching .if()');
    return frame;
  }

  _lastTask(method) {
    const last = this._last;
    if (!last || (last.node.type !== 'step' && last.node.type !== 'action')) {
      const after = last ? `, but the last call was ${last.call}` : '';
      this._fail(`.${method}()`, `must follow .step() or .action()${after}`);
    }
    return last;
  }

  _id(name, call) {
    const problem = idProblem(name, 'the name');
    if (problem) this._fail(call, problem);
    this._scope.claim(name, call);
    return name;
  }

  _handler(name, fn, what, call) {
    if (typeof fn !== 'function') this._fail(call, `${what} must be a function, found ${show(fn)}`);
    this._scope.register(name, fn, call);
    return name;
  }

  _failer(call) {
    return (message) => this._fail(call, message);
  }

  _fail(call, message) {
    this._scope.fail(call, message);
  }
}
