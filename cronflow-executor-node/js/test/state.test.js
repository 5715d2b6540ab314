// `ctx.state` in the worker runtime (src/worker.js): this test plays the Rust side of
// PROTOCOL.md, answering `state` requests from an in-memory map.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FrameDecoder } from '../src/protocol.js';

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAX_FRAME = 4096;

let w;
before(async () => {
  const sock = path.join(os.tmpdir(), `cronflow-state-test-${process.pid}.sock`);
  fs.rmSync(sock, { force: true });
  const server = net.createServer();
  await new Promise((resolve) => server.listen(sock, resolve));
  const child = spawn(process.execPath, [path.join(JS, 'src', 'worker.js')], {
    cwd: JS,
    env: {
      ...process.env,
      CRONFLOW_MODULE: path.join(JS, 'fixtures', 'state.mjs'),
      CRONFLOW_SOCKET: sock,
      CRONFLOW_MAX_FRAME: String(MAX_FRAME),
      CRONFLOW_STATS_INTERVAL_MS: '0',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const connection = await new Promise((resolve) => server.once('connection', resolve));
  w = { child, server, sock, requests: [], results: new Map(), store: new Map() };
  const send = (m) => connection.write(`${JSON.stringify(m)}\n`);
  const decoder = new FrameDecoder(1 << 20, (m) => {
    if (m.type === 'state') {
      w.requests.push(m);
      send(answer(m));
    } else if (m.type === 'result') {
      w.results.get(m.id)?.(m);
    }
  });
  connection.on('data', (chunk) => decoder.push(chunk));
  let nextId = 0;
  w.run = (handler) => {
    const id = ++nextId;
    const task = { run_id: 'r', workflow_id: 'state', node_id: handler, key: handler, attempt: 1, payload: null, steps: {}, last: null };
    send({ type: 'task', id, handler, task });
    return new Promise((resolve) => w.results.set(id, resolve));
  };
});

after(() => {
  w?.child.kill('SIGKILL');
  w?.server.close();
  if (w) fs.rmSync(w.sock, { force: true });
});

/** The fake Rust side: one map per scope; `name` holds text, so incr on it fails. */
function answer({ req, op, scope, key, value, by }) {
  const k = `${scope}/${key}`;
  switch (op) {
    case 'get':
      return w.store.has(k) ? { type: 'state_result', req, ok: true, value: w.store.get(k) } : { type: 'state_result', req, ok: true };
    case 'set':
      w.store.set(k, value);
      return { type: 'state_result', req, ok: true };
    case 'incr': {
      if (key === 'name') {
        const error = { name: 'NotAnInteger', message: `state key \`name\` holds a value that is not an integer`, retryable: false };
        return { type: 'state_result', req, ok: false, error };
      }
      const n = (w.store.get(k) ?? 0) + by;
      w.store.set(k, n);
      return { type: 'state_result', req, ok: true, value: n };
    }
    case 'delete': {
      const found = w.store.delete(k);
      return { type: 'state_result', req, ok: true, value: found };
    }
    default:
      throw new Error(`unexpected op ${op}`);
  }
}

test('get, set with a TTL, incr and delete go to Rust and come back', async () => {
  w.requests.length = 0;
  const r = await w.run('roundtrip');
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(r.output, { a: { x: 1 }, missing: true, n: 1, m: -4, g: null, deleted: true, again: false, same: true });
  const sent = w.requests.map(({ op, scope, key, value, ttl_ms, by, id }) => ({ op, scope, key, value, ttl_ms, by, id }));
  assert.deepEqual(sent[0], { op: 'set', scope: 'workflow', key: 'a', value: { x: 1 }, ttl_ms: 3_600_000, by: undefined, id: r.id });
  assert.deepEqual(sent.map((s) => `${s.op} ${s.scope} ${s.key}`), [
    'set workflow a',
    'get workflow a',
    'get workflow missing',
    'incr workflow n',
    'incr workflow n',
    'set global g',
    'get global g',
    'delete workflow a',
    'delete workflow a',
  ]);
  assert.deepEqual([sent[3].by, sent[4].by], [1, -5]);
  const reqs = w.requests.map((m) => m.req);
  assert.equal(new Set(reqs).size, reqs.length, 'request numbers are unique');
});

test('bad input is refused in the worker with typed, non-retryable errors', async () => {
  w.requests.length = 0;
  const r = await w.run('bad-input');
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(r.output, {
    emptyKey: 'InvalidStateKey',
    numberKey: 'InvalidStateKey',
    undef: 'InvalidStateValue',
    bigint: 'InvalidStateValue',
    circular: 'InvalidStateValue',
    ttlWord: 'InvalidStateTtl',
    ttlZero: 'InvalidStateTtl',
    fraction: 'InvalidStateRequest',
    huge: 'StateValueTooLarge',
  });
  assert.deepEqual(w.requests, [], 'nothing was sent');
});

test("an error from Rust rejects the promise and, uncaught, fails the task with its name", async () => {
  const r = await w.run('incr-text');
  assert.equal(r.ok, false);
  assert.equal(r.error.name, 'NotAnInteger');
  assert.equal(r.error.retryable, false);
  assert.match(r.error.message, /not an integer/);
});
