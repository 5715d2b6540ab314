// The worker runtime: the Rust pool runs `node src/worker.js` with CRONFLOW_MODULE and
// CRONFLOW_SOCKET; the worker connects to the socket, imports the user's module, sends `ready`
// with its WDOs and then runs the handlers the engine asks for. See PROTOCOL.md.

import net from 'node:net';
import { createRequire } from 'node:module';
import { Worker as Thread } from 'node:worker_threads';
import { AsyncLocalStorage } from 'node:async_hooks';
import { format } from 'node:util';
import { pathToFileURL } from 'node:url';
import { workflows } from './builder.js';
import { parseDuration } from './duration.js';
import { show } from './errors.js';
import { FrameDecoder, lineWriter, parseMaxFrame } from './protocol.js';

export const PROTOCOL_VERSION = 1;
const LEVELS = ['debug', 'info', 'warn', 'error'];

// The id of the task whose handler (or anything it started, however asynchronous) is running.
const currentTask = new AsyncLocalStorage();

function die(message, code) {
  process.stderr.write(`cronflow worker: ${message}\n`);
  process.exit(code);
}

/** Imports the module (ESM or CommonJS); falls back to `require` for file types import rejects. */
async function loadModule(path) {
  try {
    return await import(pathToFileURL(path).href);
  } catch (e) {
    if (e?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e;
    return { default: createRequire(pathToFileURL(path).href)(path) };
  }
}

function isWorkflow(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.id === 'string' &&
    typeof value.handlers === 'function' &&
    typeof value.toWDO === 'function'
  );
}

/** The workflows of the SDK registry plus any workflow builder the module exports. */
function collectWorkflows(namespace) {
  const list = [...workflows()];
  const ids = new Set(list.map((w) => w.id));
  const add = (value) => {
    if (Array.isArray(value)) return value.forEach(add);
    if (isWorkflow(value) && !ids.has(value.id)) {
      ids.add(value.id);
      list.push(value);
    }
  };
  for (const value of Object.values(namespace ?? {})) add(value);
  const cjs = namespace?.default;
  if (cjs !== null && typeof cjs === 'object' && !isWorkflow(cjs)) Object.values(cjs).forEach(add);
  return list;
}

/** A short description of a thrown non-Error value. */
function describeValue(value) {
  let text;
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint') text = `${value}n`;
  else if (typeof value === 'function') text = 'a function';
  else if (typeof value === 'symbol' || value === undefined) text = String(value);
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = Object.prototype.toString.call(value);
    }
  }
  if (text.length > 1000) text = `${text.slice(0, 1000)}...`;
  return `a non-Error value was thrown: ${text}`;
}

/** `{name, message, stack?, code?, retryable?}` of anything thrown. */
export function describeError(e) {
  const errorLike = e instanceof Error || (e !== null && typeof e === 'object' && typeof e.message === 'string');
  if (!errorLike) return { name: 'Error', message: describeValue(e) };
  const out = {
    name: typeof e.name === 'string' && e.name !== '' ? e.name : 'Error',
    message: String(e.message),
  };
  if (typeof e.stack === 'string') out.stack = e.stack;
  if (e.code !== undefined && e.code !== null) out.code = String(e.code);
  if (e.retryable === false) out.retryable = false;
  return out;
}

/**
 * The `error` of an on_error handler or on_failure hook as a real `Error` (so `instanceof
 * Error` holds and rethrowing it fails the task with the same name, message, stack and code).
 * Its stack is the original one, or `name: message` when the failure had none.
 */
export function taskError({ name, message, stack, code } = {}) {
  const e = new Error(String(message ?? ''));
  e.name = typeof name === 'string' && name !== '' ? name : 'Error';
  e.stack = typeof stack === 'string' ? stack : `${e.name}: ${e.message}`;
  if (code !== undefined && code !== null) e.code = String(code);
  return e;
}

class Worker {
  constructor(socket, modulePath, maxFrame) {
    this.socket = socket;
    this.modulePath = modulePath;
    this.maxFrame = maxFrame;
    this.write = lineWriter(socket);
    this.inflight = new Map(); // task id -> AbortController
    this.stateRequests = new Map(); // state request number -> { resolve, reject }
    this.nextStateRequest = 0;
    this.shuttingDown = false;
    this.exiting = false;
  }

  async start() {
    let list;
    try {
      const namespace = await loadModule(this.modulePath);
      list = collectWorkflows(namespace);
      if (list.length === 0) {
        const e = new Error(
          `module ${this.modulePath} defines no workflow: call cronflow.define(...) from the 'cronflow' package`,
        );
        e.name = 'NoWorkflows';
        throw e;
      }
      this.wdos = list.map((w) => w.toWDO());
    } catch (e) {
      const { name, message, stack } = describeError(e);
      const line = JSON.stringify({ type: 'load_error', module: this.modulePath, error: { name, message, stack } });
      process.exitCode = 1;
      this.socket.end(`${line}\n`, () => process.exit());
      return;
    }
    this.byWorkflow = new Map(list.map((w) => [w.id, w.handlers()]));
    this.write(JSON.stringify({ type: 'ready', protocol: PROTOCOL_VERSION, pid: process.pid, workflows: this.wdos }));
    this.wdos = null;
    this.reportStats();
    this.captureConsole();
    const decoder = new FrameDecoder(this.maxFrame, (message) => this.onMessage(message));
    this.socket.on('data', (chunk) => {
      try {
        decoder.push(chunk);
      } catch (e) {
        this.protocolError(e.message);
      }
    });
  }

  /**
   * Inside a task, `console.*` becomes a `log` message of that task, so Rust logs it with its
   * run and node; outside tasks (and for direct `process.stdout.write`) output stays on
   * stdout/stderr, which Rust logs with the worker's pid only.
   */
  captureConsole() {
    const methods = { log: 'info', info: 'info', debug: 'debug', warn: 'warn', error: 'error', trace: 'debug' };
    for (const [method, level] of Object.entries(methods)) {
      const original = console[method].bind(console);
      console[method] = (...args) => {
        const id = currentTask.getStore();
        if (id === undefined) return original(...args);
        const stream = level === 'warn' || level === 'error' ? 'stderr' : 'stdout';
        this.log(id, level, format(...args), { console: method, stream });
      };
    }
  }

  /** Sends `stats` (heap in use, RSS) every CRONFLOW_STATS_INTERVAL_MS; 0 turns it off. */
  reportStats() {
    const ms = Number(process.env.CRONFLOW_STATS_INTERVAL_MS ?? 1000);
    if (!Number.isFinite(ms) || ms <= 0) return;
    const send = () => {
      const { heapUsed, rss } = process.memoryUsage();
      this.write(JSON.stringify({ type: 'stats', heap_used: heapUsed, rss }));
    };
    setInterval(send, ms).unref();
  }

  protocolError(message) {
    if (this.exiting) return;
    this.exiting = true;
    process.stderr.write(`cronflow worker: protocol error: ${message}\n`);
    this.write(JSON.stringify({ type: 'log', id: null, level: 'error', message: `protocol error: ${message}`, fields: {} }));
    process.exitCode = 2;
    this.socket.end(() => process.exit());
    setTimeout(() => process.exit(), 1000).unref();
  }

  onMessage(message) {
    switch (message?.type) {
      case 'task':
        return this.startTask(message);
      case 'cancel': {
        const controller = this.inflight.get(message.id);
        if (!controller) return;
        // Tells Rust the event loop turns: a handler that keeps running is not blocking it.
        this.write(`{"type":"cancelling","id":${JSON.stringify(message.id)}}`);
        controller.abort(new DOMException('the task was cancelled by the engine', 'AbortError'));
        return;
      }
      case 'shutdown':
        this.shuttingDown = true;
        return this.maybeExit();
      case 'state_result':
        return this.onStateResult(message);
      default:
        this.log(null, 'warn', `ignored a message of unknown type ${JSON.stringify(message?.type)}`);
    }
  }

  findHandler(workflowId, name) {
    const own = this.byWorkflow.get(workflowId)?.get(name);
    if (own) return own;
    for (const handlers of this.byWorkflow.values()) {
      const fn = handlers.get(name);
      if (fn) return fn;
    }
    return undefined;
  }

  startTask({ id, handler: name, task = {} }) {
    if (typeof id !== 'number' && typeof id !== 'string') {
      return this.log(null, 'error', `ignored a task without a valid id (handler ${JSON.stringify(name)})`);
    }
    if (this.shuttingDown) {
      return this.sendError(id, { name: 'ShuttingDown', message: 'the worker is shutting down' });
    }
    const fn = this.findHandler(task.workflow_id, name);
    if (typeof fn !== 'function') {
      return this.sendError(id, {
        name: 'UnknownHandler',
        message: `no handler named ${JSON.stringify(name)} in workflow ${JSON.stringify(task.workflow_id)} of module ${this.modulePath}`,
        retryable: false,
      });
    }
    const controller = new AbortController();
    this.inflight.set(id, controller);
    const ctx = this.context(id, task, controller.signal);
    const done = (send) => {
      send();
      this.inflight.delete(id);
      this.maybeExit();
    };
    const ok = (output) => done(() => this.sendOutput(id, name, output));
    const fail = (e) => done(() => this.sendError(id, describeError(e)));
    let result;
    try {
      result = currentTask.run(id, fn, ctx);
    } catch (e) {
      return fail(e);
    }
    if (result !== null && typeof result?.then === 'function') result.then(ok, fail);
    else ok(result);
  }

  context(id, task, signal) {
    const steps = {};
    for (const [node, output] of Object.entries(task.steps ?? {})) steps[node] = { output };
    const log = {};
    for (const level of LEVELS) log[level] = (message, fields) => this.log(id, level, message, fields);
    const worker = this;
    let state;
    return {
      /** The workflow's durable key-value state (`.global`: shared by every workflow); built on first use. */
      get state() {
        state ??= worker.stateOf(id);
        return state;
      },
      payload: task.payload ?? null,
      steps,
      last: task.last ?? null,
      trigger: task.trigger ?? null,
      run: { id: task.run_id, workflowId: task.workflow_id, attempt: task.attempt },
      idempotencyKey: task.idempotency_key,
      deadline: task.deadline ? new Date(task.deadline) : null,
      signal,
      log,
      // What the task is for, and the control-flow fields (undefined when the task has none).
      kind: task.kind ?? 'step',
      item: task.item,
      index: task.index,
      token: task.token,
      error: task.error ? taskError(task.error) : undefined,
    };
  }

  /** `ctx.state` of task `id`: get/set/incr/delete on its workflow's namespace, and `.global`. */
  stateOf(id) {
    const scoped = (scope) => ({
      get: (key) => this.stateRequest(id, { op: 'get', scope, key }),
      set: (key, value, options) => this.stateRequest(id, { op: 'set', scope, key, value, options }),
      incr: (key, by = 1) => this.stateRequest(id, { op: 'incr', scope, key, by }),
      delete: (key) => this.stateRequest(id, { op: 'delete', scope, key }),
    });
    return Object.freeze({ ...scoped('workflow'), global: Object.freeze(scoped('global')) });
  }

  /** Sends one `state` request; its promise settles with the `state_result`. */
  stateRequest(id, { op, scope, key, value, options, by }) {
    const fail = (name, message) => {
      const e = new Error(message);
      e.name = name;
      e.retryable = false;
      return Promise.reject(e);
    };
    if (typeof key !== 'string' || key === '') {
      return fail('InvalidStateKey', `a state key must be a non-empty string, found ${show(key)}`);
    }
    const message = { type: 'state', id, req: ++this.nextStateRequest, op, scope, key };
    let text; // the value's JSON text, for `set`
    if (op === 'set') {
      try {
        text = JSON.stringify(value);
      } catch (e) {
        return fail('InvalidStateValue', `the value of state key ${JSON.stringify(key)} is not JSON-serialisable: ${e.message}`);
      }
      if (text === undefined) {
        return fail('InvalidStateValue', `the value of state key ${JSON.stringify(key)} is ${typeof value}, which is not JSON-serialisable`);
      }
      const ttl = options?.ttl;
      if (ttl !== undefined && ttl !== null) {
        let ms;
        try {
          ms = parseDuration(ttl);
        } catch (e) {
          return fail('InvalidStateTtl', `invalid TTL for state key ${JSON.stringify(key)}: ${e.message}`);
        }
        if (ms === 0) return fail('InvalidStateTtl', 'a TTL must be longer than zero');
        message.ttl_ms = ms;
      }
    }
    if (op === 'incr') {
      if (!Number.isSafeInteger(by)) {
        return fail('InvalidStateRequest', `incr needs a whole number (a safe integer), found ${show(by)}`);
      }
      message.by = by;
    }
    let line = JSON.stringify(message);
    if (text !== undefined) line = `${line.slice(0, -1)},"value":${text}}`;
    const bytes = Buffer.byteLength(line);
    if (bytes > this.maxFrame) {
      return fail('StateValueTooLarge', `the state request for key ${JSON.stringify(key)} is ${bytes} bytes, over the maximum frame of ${this.maxFrame} bytes`);
    }
    return new Promise((resolve, reject) => {
      this.stateRequests.set(message.req, { resolve, reject });
      this.write(line);
    });
  }

  onStateResult({ req, ok, value, error }) {
    const pending = this.stateRequests.get(req);
    if (!pending) return this.log(null, 'warn', `ignored a state_result for unknown request ${JSON.stringify(req)}`);
    this.stateRequests.delete(req);
    if (ok) return pending.resolve(value);
    const e = new Error(String(error?.message ?? 'the state request failed'));
    e.name = typeof error?.name === 'string' ? error.name : 'StateError';
    if (error?.retryable === false) e.retryable = false;
    pending.reject(e);
  }

  sendOutput(id, name, output) {
    let text = 'null';
    if (output !== undefined) {
      try {
        text = JSON.stringify(output);
      } catch (e) {
        return this.sendError(id, {
          name: 'SerializationError',
          message: `the output of handler ${JSON.stringify(name)} is not JSON-serialisable: ${e.message}`,
          retryable: false,
        });
      }
      if (text === undefined) {
        return this.sendError(id, {
          name: 'SerializationError',
          message: `the output of handler ${JSON.stringify(name)} is a ${typeof output}, which is not JSON-serialisable`,
          retryable: false,
        });
      }
    }
    const line = `{"type":"result","id":${JSON.stringify(id)},"ok":true,"output":${text}}`;
    const bytes = Buffer.byteLength(line);
    if (bytes > this.maxFrame) {
      return this.sendError(id, {
        name: 'OutputTooLarge',
        message: `the output of handler ${JSON.stringify(name)} is ${bytes} bytes once serialised, over the maximum frame of ${this.maxFrame} bytes`,
        retryable: false,
      });
    }
    this.write(line);
  }

  sendError(id, error) {
    this.write(JSON.stringify({ type: 'result', id, ok: false, error }));
  }

  log(id, level, message, fields) {
    let line;
    try {
      line = JSON.stringify({ type: 'log', id, level, message: String(message), fields: fields ?? {} });
    } catch (e) {
      const note = { fields_error: `log fields are not JSON-serialisable: ${e.message}` };
      line = JSON.stringify({ type: 'log', id, level, message: String(message), fields: note });
    }
    if (Buffer.byteLength(line) <= this.maxFrame) this.write(line);
  }

  maybeExit() {
    if (!this.shuttingDown || this.inflight.size > 0 || this.exiting) return;
    this.exiting = true;
    this.socket.end(() => process.exit());
  }
}

// Runs on its own thread, so it works while a handler blocks the event loop: when the host
// dies without a word (kill -9), this process is re-parented; it then kills its own process
// group (itself and whatever its handlers started), so no worker outlives its host.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
setInterval(() => {
  if (process.ppid === workerData.ppid) return;
  if (workerData.ownGroup) try { process.kill(-workerData.pid, 'SIGKILL'); } catch {}
  process.kill(workerData.pid, 'SIGKILL');
}, workerData.ms);
`;

/**
 * The Rust side closed the connection without `shutdown`: it dropped this worker or died. No
 * one else may be left to stop what the handlers started, so the whole process group goes
 * (when this process leads it, as under the Rust pool), this process with it.
 */
function hostGone() {
  if (process.env.CRONFLOW_OWN_GROUP === '1') {
    try {
      process.kill(-process.pid, 'SIGKILL');
    } catch {
      // not a group leader after all: exit alone
    }
  }
  process.exit(); // code 0 unless a load or protocol error is pending
}

function startWatchdog() {
  const ms = Number(process.env.CRONFLOW_WATCHDOG_MS ?? 250);
  if (!Number.isFinite(ms) || ms <= 0) return;
  const thread = new Thread(WATCHDOG, { eval: true, workerData: { ppid: process.ppid, pid: process.pid, ms, ownGroup: process.env.CRONFLOW_OWN_GROUP === '1' },
  });
  thread.unref();
}

function main() {
  const modulePath = process.env.CRONFLOW_MODULE;
  const socketPath = process.env.CRONFLOW_SOCKET;
  if (!modulePath) die('CRONFLOW_MODULE is not set (the absolute path of the workflow module)', 2);
  if (!socketPath) die('CRONFLOW_SOCKET is not set (the Unix socket to connect to)', 2);
  let maxFrame;
  try {
    maxFrame = parseMaxFrame(process.env.CRONFLOW_MAX_FRAME);
  } catch (e) {
    die(e.message, 2);
  }
  startWatchdog();
  const socket = net.createConnection(socketPath);
  let connected = false;
  socket.on('error', (e) => {
    if (!connected) die(`cannot connect to ${socketPath}: ${e.message}`, 2);
    hostGone();
  });
  socket.on('end', hostGone);
  socket.once('connect', () => {
    connected = true;
    new Worker(socket, modulePath, maxFrame).start().catch((e) => die(e?.stack ?? String(e), 2));
  });
}

main();
