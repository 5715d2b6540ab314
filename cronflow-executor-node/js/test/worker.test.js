// The worker runtime (src/worker.js) against real `node` processes: this test plays the Rust
// side of PROTOCOL.md with a net.Server on a Unix socket. Fixtures live in ../fixtures/
// because `node --test test/` runs every file under test/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FrameDecoder, ProtocolError } from '../src/protocol.js';

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WORKER = path.join(JS, 'src', 'worker.js');
const fixture = (name) => path.join(JS, 'fixtures', name);
let sockets = 0;

/** Starts a worker on `module`; resolves once it has connected. */
async function startWorker(module, env = {}) {
  const sock = path.join(os.tmpdir(), `cronflow-worker-test-${process.pid}-${++sockets}.sock`);
  fs.rmSync(sock, { force: true });
  const server = net.createServer();
  await new Promise((resolve) => server.listen(sock, resolve));
  const child = spawn(process.execPath, [WORKER], {
    cwd: JS,
    env: { ...process.env, CRONFLOW_MODULE: module, CRONFLOW_SOCKET: sock, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const w = { child, messages: [], waiters: [], stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (w.stdout += d));
  child.stderr.on('data', (d) => (w.stderr += d));
  w.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  w.kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    server.close();
    fs.rmSync(sock, { force: true });
  };
  const connection = await Promise.race([
    new Promise((resolve) => server.once('connection', resolve)),
    w.exited.then((e) => {
      throw new Error(`worker exited before connecting: ${JSON.stringify(e)}\n${w.stderr}`);
    }),
  ]);
  w.socket = connection;
  const decoder = new FrameDecoder(64 * 1024 * 1024, (m) => {
    w.messages.push(m);
    w.waiters = w.waiters.filter(({ pred, resolve }) => !(pred(m) && (resolve(m), true)));
  });
  connection.on('data', (chunk) => decoder.push(chunk));
  connection.on('error', () => {});
  w.send = (message) => connection.write(`${JSON.stringify(message)}\n`);
  w.waitFor = (pred, ms = 10_000) => {
    const seen = w.messages.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message in ${ms} ms; stderr:\n${w.stderr}`)), ms);
      w.waiters.push({ pred, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  };
  w.result = (id) => w.waitFor((m) => m.type === 'result' && m.id === id);
  let nextId = 0;
  w.run = (handler, task = {}, workflow = 'fixture') => {
    const id = ++nextId;
    w.send({ type: 'task', id, handler, task: taskFor(workflow, handler, task) });
    return w.result(id);
  };
  return w;
}

function taskFor(workflow, handler, overrides) {
  return {
    run_id: 'run-1',
    workflow_id: workflow,
    node_id: handler,
    key: handler,
    attempt: 1,
    idempotency_key: `run-1/${handler}`,
    deadline: null,
    payload: null,
    steps: {},
    last: null,
    ...overrides,
  };
}

describe('worker on an ES module', () => {
  let w;
  before(async () => {
    w = await startWorker(fixture('workflows.mjs'));
  });
  after(() => w?.kill());

  test('sends ready with its pid and the WDOs of the module', async () => {
    const ready = await w.waitFor((m) => m.type === 'ready');
    assert.equal(ready.pid, w.child.pid);
    assert.equal(ready.protocol, 1);
    assert.deepEqual(ready.workflows.map((wdo) => wdo.id), ['fixture', 'other']);
    assert.ok(ready.workflows[0].nodes.some((n) => n.id === 'double' && n.type === 'step'));
    assert.equal(w.messages[0].type, 'ready', 'ready is the first message');
    assert.match(w.stdout, /fixture module: loading/);
  });

  test('returns outputs; undefined becomes null', async () => {
    const r = await w.run('double', { payload: { n: 21 } });
    assert.deepEqual(r, { type: 'result', id: r.id, ok: true, output: { doubled: 42 } });
    assert.equal((await w.run('async-ok')).output, 'done');
    const undef = await w.run('undef');
    assert.equal(undef.ok, true);
    assert.equal(undef.output, null);
  });

  test('prefers the handler of the task workflow', async () => {
    assert.deepEqual((await w.run('echo', { payload: { a: 1 } })).output, { a: 1 });
    assert.equal((await w.run('echo', {}, 'other')).output, 'from other');
  });

  test('an Error becomes {name, message, stack, code}', async () => {
    const r = await w.run('throws');
    assert.equal(r.ok, false);
    assert.equal(r.error.name, 'TypeError');
    assert.equal(r.error.message, 'bad input');
    assert.equal(r.error.code, 'E_BAD');
    assert.match(r.error.stack, /workflows\.mjs/);
    assert.equal(r.error.retryable, undefined);
    const final = await w.run('rejects-final');
    assert.equal(final.error.name, 'PaymentDeclined');
    assert.equal(final.error.retryable, false);
  });

  test('a thrown non-Error value becomes an Error with a describing message', async () => {
    const s = await w.run('throws-string');
    assert.deepEqual(s.error, { name: 'Error', message: 'card declined' });
    const o = await w.run('throws-object');
    assert.equal(o.error.name, 'Error');
    assert.match(o.error.message, /non-Error value.*\{"reason":42\}/);
    const u = await w.run('throws-undefined');
    assert.match(u.error.message, /non-Error value.*undefined/);
  });

  test('an output that is not JSON is a SerializationError', async () => {
    for (const handler of ['bigint', 'circular', 'function']) {
      const r = await w.run(handler);
      assert.equal(r.ok, false, handler);
      assert.equal(r.error.name, 'SerializationError', handler);
      assert.equal(r.error.retryable, false, handler);
      assert.match(r.error.message, new RegExp(`handler "${handler}" is not JSON-serialisable|is a function`));
    }
  });

  test('an unknown handler fails without retry', async () => {
    const r = await w.run('nope');
    assert.equal(r.error.name, 'UnknownHandler');
    assert.equal(r.error.retryable, false);
    assert.match(r.error.message, /"nope"/);
  });

  test('ctx carries payload, steps, last, trigger, run, idempotencyKey, deadline and signal', async () => {
    const task = {
      run_id: 'r-9',
      attempt: 3,
      idempotency_key: 'r-9/context',
      deadline: '2030-01-02T03:04:05.000Z',
      payload: { order: 1 },
      steps: { fetch: { items: 2 }, price: 9.5 },
      last: 9.5,
      trigger: { type: 'webhook', headers: { 'x-id': '7' } },
    };
    const r = await w.run('context', task);
    assert.deepEqual(r.output, {
      payload: { order: 1 },
      steps: { fetch: { output: { items: 2 } }, price: { output: 9.5 } },
      last: 9.5,
      trigger: { type: 'webhook', headers: { 'x-id': '7' } },
      run: { id: 'r-9', workflowId: 'fixture', attempt: 3 },
      idempotencyKey: 'r-9/context',
      deadline: '2030-01-02T03:04:05.000Z',
      signal: true,
    });
  });

  test('ctx carries kind, item, index, token and error when the task has them', async () => {
    const none = await w.run('control');
    assert.deepEqual(none.output, {
      kind: 'step', item: '<absent>', index: '<absent>', token: '<absent>', error: '<absent>',
    });
    const loop = await w.run('control', { kind: 'items', item: null, index: 0 });
    assert.deepEqual(loop.output, {
      kind: 'items', item: null, index: 0, token: '<absent>', error: '<absent>',
    });
    const chunk = await w.run('control', { kind: 'step', item: [{ a: 1 }, 'b'], index: 4 });
    assert.deepEqual([chunk.output.item, chunk.output.index], [[{ a: 1 }, 'b'], 4]);
    const paused = await w.run('control', { kind: 'on_pause', token: 'resume-me' });
    assert.deepEqual([paused.output.kind, paused.output.token], ['on_pause', 'resume-me']);
    const error = { name: 'PaymentDeclined', message: 'card expired', stack: 'PaymentDeclined: card expired\n    at x', code: 'E42' };
    const failed = await w.run('control', { kind: 'on_error', error });
    assert.deepEqual(failed.output, {
      kind: 'on_error', item: '<absent>', index: '<absent>', token: '<absent>',
      error: { isError: true, ...error },
    });
    // Without a stack or code: the stack is `name: message`, never the worker's own frames.
    const bare = await w.run('control', { kind: 'hook', error: { name: 'TimeoutError', message: 'too slow' } });
    assert.deepEqual(bare.output.error, {
      isError: true, name: 'TimeoutError', message: 'too slow', stack: 'TimeoutError: too slow', code: '<absent>',
    });
  });

  test('rethrowing ctx.error fails the task with the same error', async () => {
    const error = { name: 'PaymentDeclined', message: 'card expired', stack: 'PaymentDeclined: card expired\n    at x', code: 'E42' };
    const r = await w.run('rethrow', { kind: 'on_error', error });
    assert.equal(r.ok, false);
    assert.deepEqual(r.error, error);
  });

  test('ctx.log sends log messages tagged with the task id', async () => {
    const r = await w.run('logs');
    const logs = w.messages.filter((m) => m.type === 'log' && m.id === r.id);
    assert.deepEqual(logs, [
      { type: 'log', id: r.id, level: 'info', message: 'hello', fields: { order: 7 } },
      { type: 'log', id: r.id, level: 'warn', message: 'careful', fields: {} },
    ]);
  });

  test('console output in a handler becomes log messages of its task, never protocol lines', async () => {
    const r = await w.run('noisy');
    assert.equal(r.output, 'quiet');
    assert.equal((await w.run('double', { payload: { n: 1 } })).output.doubled, 2);
    assert.ok(!w.messages.some((m) => m.id === 999));
    const logs = w.messages.filter((m) => m.type === 'log' && m.id === r.id);
    assert.deepEqual(
      logs.map((m) => [m.level, m.message, m.fields.console]),
      [
        ['info', 'noise\n{"type":"result","id":999,"ok":true,"output":"fake"}', 'log'],
        ['error', 'more noise on stderr', 'error'],
      ],
    );
    // Output outside a task, and direct writes, stay on the process's own streams.
    assert.match(w.stdout, /stdout noise at import/);
    assert.match(w.stdout, /a partial line without newline/);
  });

  test('cancel aborts ctx.signal', async () => {
    const id = 10_000;
    w.send({ type: 'task', id, handler: 'wait-abort', task: taskFor('fixture', 'wait-abort', {}) });
    w.send({ type: 'cancel', id: 424242 }); // unknown ids are ignored
    await new Promise((resolve) => setTimeout(resolve, 20));
    w.send({ type: 'cancel', id });
    const r = await w.result(id);
    assert.equal(r.ok, false);
    assert.equal(r.error.name, 'AbortError');
    // The cancel is acknowledged (the event loop turns), once, and only for a running task.
    const acks = w.messages.filter((m) => m.type === 'cancelling');
    assert.deepEqual(acks, [{ type: 'cancelling', id }]);
  });

  test('many tasks in flight are answered with the right ids, in completion order', async () => {
    const slow = 20_000;
    w.send({ type: 'task', id: slow, handler: 'sleep', task: taskFor('fixture', 'sleep', { payload: { ms: 600 } }) });
    const ids = [];
    for (let i = 0; i < 300; i++) {
      const id = 20_001 + i;
      ids.push(id);
      const handler = i % 2 ? 'echo' : 'sleep';
      const payload = i % 2 ? { i } : { ms: i % 25 };
      w.send({ type: 'task', id, handler, task: taskFor('fixture', handler, { payload }) });
    }
    const results = await Promise.all(ids.map((id) => w.result(id)));
    results.forEach((r, i) => assert.deepEqual(r.output, i % 2 ? { i } : i % 25, `task ${ids[i]}`));
    const before = w.messages.findIndex((m) => m.id === slow);
    assert.equal(before, -1, 'the slow task is still running after 300 quicker ones finished');
    assert.equal((await w.result(slow)).output, 600);
  });

  test('a 5 MB payload round-trips', async () => {
    const big = { text: 'é'.repeat(2_500_000), list: Array.from({ length: 1000 }, (_, i) => i) };
    const started = Date.now();
    const r = await w.run('echo', { payload: big });
    assert.deepEqual(r.output, big);
    assert.ok(Date.now() - started < 10_000, 'sanity bound');
  });
});

describe('worker start-up and shutdown', () => {
  for (const [file, name, pattern] of [
    ['syntax-error.mjs', 'SyntaxError', /Unexpected token/],
    ['throws-at-import.mjs', 'Error', /config file missing/],
    ['no-workflows.mjs', 'NoWorkflows', /defines no workflow/],
    ['does-not-exist.mjs', 'Error', /Cannot find module/],
  ]) {
    test(`load error: ${file}`, async () => {
      const w = await startWorker(fixture(file));
      try {
        const m = await w.waitFor((x) => x.type === 'load_error');
        assert.equal(m.module, fixture(file));
        assert.equal(m.error.name, name);
        assert.match(m.error.message, pattern);
        assert.equal(typeof m.error.stack, 'string');
        assert.deepEqual(await w.exited, { code: 1, signal: null });
        assert.ok(!w.messages.some((x) => x.type === 'ready'));
      } finally {
        w.kill();
      }
    });
  }

  test('a CommonJS module loads', async () => {
    const w = await startWorker(fixture('commonjs.cjs'));
    try {
      const ready = await w.waitFor((m) => m.type === 'ready');
      assert.deepEqual(ready.workflows.map((wdo) => wdo.id), ['cjs']);
      assert.equal((await w.run('hello', { payload: { name: 'Ada' } }, 'cjs')).output, 'hello Ada');
    } finally {
      w.kill();
    }
  });

  test('shutdown finishes in-flight work, refuses new tasks, then exits 0', async () => {
    const w = await startWorker(fixture('workflows.mjs'));
    try {
      await w.waitFor((m) => m.type === 'ready');
      w.send({ type: 'task', id: 1, handler: 'sleep', task: taskFor('fixture', 'sleep', { payload: { ms: 200 } }) });
      w.send({ type: 'shutdown' });
      w.send({ type: 'task', id: 2, handler: 'echo', task: taskFor('fixture', 'echo', { payload: 1 }) });
      const late = await w.result(2);
      assert.equal(late.error.name, 'ShuttingDown');
      assert.equal(late.error.retryable, undefined);
      assert.equal((await w.result(1)).output, 200);
      assert.deepEqual(await w.exited, { code: 0, signal: null });
    } finally {
      w.kill();
    }
  });

  test('frame cap: an oversized output fails, an oversized line from Rust exits 2', async () => {
    const w = await startWorker(fixture('workflows.mjs'), { CRONFLOW_MAX_FRAME: '4096' });
    try {
      await w.waitFor((m) => m.type === 'ready');
      const r = await w.run('big', { payload: { n: 5000 } });
      assert.equal(r.error.name, 'OutputTooLarge');
      assert.equal(r.error.retryable, false);
      assert.equal((await w.run('big', { payload: { n: 10 } })).output, 'x'.repeat(10));
      w.socket.write(`${'x'.repeat(3000)}`);
      w.socket.write(`${'x'.repeat(3000)}\n`);
      assert.deepEqual(await w.exited, { code: 2, signal: null });
      assert.match(w.stderr, /exceeds the maximum frame of 4096 bytes/);
    } finally {
      w.kill();
    }
  });
});

describe('FrameDecoder', () => {
  test('splits lines across and within chunks, including multi-byte characters', () => {
    const got = [];
    const d = new FrameDecoder(1024, (m) => got.push(m));
    const bytes = Buffer.from('{"a":"é€"}\n{"b":2}\n\n{"c":[1,2]}\n');
    for (let i = 0; i < bytes.length; i++) d.push(bytes.subarray(i, i + 1));
    d.push(Buffer.from('{"d":1}\n{"e":'));
    d.push(Buffer.from('2}\n'));
    assert.deepEqual(got, [{ a: 'é€' }, { b: 2 }, { c: [1, 2] }, { d: 1 }, { e: 2 }]);
  });

  test('rejects a line over the cap, with or without its newline', () => {
    assert.throws(() => new FrameDecoder(8, () => {}).push(Buffer.from('"0123456789"\n')), ProtocolError);
    const d = new FrameDecoder(8, () => {});
    d.push(Buffer.from('"0123'));
    assert.throws(() => d.push(Buffer.from('456789')), /maximum frame of 8 bytes/);
    assert.throws(() => new FrameDecoder(64, () => {}).push(Buffer.from('not json\n')), /not JSON/);
  });
});
