import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cronflow, CronflowDefinitionError } from '../src/index.js';

const fn = () => null;
let n = 0;
const wf = (extra = {}) => cronflow.define({ id: `builders-${++n}`, ...extra });

test('step and action with options, retry and timeout on the last task', () => {
  const w = wf().step('a', fn, { timeout: '30s', retry: { maxAttempts: 3, delay: 250 } })
    .action('b', fn).retry({ maxAttempts: 2, backoff: 'fixed', jitter: true, retryOn: ['E'] }).timeout(90_000);
  assert.deepEqual(w.toWDO().nodes, [
    { type: 'step', id: 'a', handler: 'a', timeout: '30s', retry: { max_attempts: 3, backoff: 'exponential', delay: '250ms' } },
    { type: 'action', id: 'b', handler: 'b', retry: { max_attempts: 2, backoff: 'fixed', jitter: true, retry_on: ['E'] }, timeout: '90s' },
  ]);
  assert.deepEqual([...w.handlers().keys()], ['a', 'b']);
  assert.equal(w.handlers().get('a'), fn);
});

test('onError as a task option or chained on the last step or action', () => {
  const fallback = () => ({ charged: false });
  const undo = () => null;
  const w = wf().step('charge', fn, { retry: 3, onError: fallback })
    .action('notify', fn).onError(undo).timeout('1s')
    .parallel([(b) => b.step('inner', fn).onError(fallback)]);
  assert.deepEqual(w.toWDO().nodes, [
    { type: 'step', id: 'charge', handler: 'charge', retry: { max_attempts: 3, backoff: 'exponential' }, on_error: 'charge.onError' },
    { type: 'action', id: 'notify', handler: 'notify', on_error: 'notify.onError', timeout: '1s' },
    { type: 'parallel', id: 'parallel-1', branches: [
      { nodes: [{ type: 'step', id: 'inner', handler: 'inner', on_error: 'inner.onError' }] }] },
  ]);
  assert.deepEqual([...w.handlers().keys()], ['charge', 'charge.onError', 'notify', 'notify.onError', 'inner', 'inner.onError']);
  assert.equal(w.handlers().get('charge.onError'), fallback);
  assert.equal(w.handlers().get('notify.onError'), undo);
});

test('hooks and debounce given to define', () => {
  const ok = () => 'ok';
  const bad = () => 'bad';
  const w = cronflow.define({ id: 'hooked', hooks: { onSuccess: ok, onFailure: bad },
    debounce: { window: 2000, key: '/customer' } }).step('s', fn);
  const wdo = w.toWDO();
  assert.deepEqual(wdo.hooks, { on_success: 'hooked.onSuccess', on_failure: 'hooked.onFailure' });
  assert.deepEqual(wdo.options, { debounce: { window: '2s', key: '/customer' } });
  assert.equal(w.handlers().get('hooked.onSuccess'), ok);
  assert.equal(w.handlers().get('hooked.onFailure'), bad);
  const one = wf({ hooks: { onFailure: bad }, debounce: '500ms' }).step('s', fn).toWDO();
  assert.deepEqual(one.hooks, { on_failure: `${one.id}.onFailure` });
  assert.deepEqual(one.options.debounce, { window: '500ms' });
  const none = wf({ hooks: {} }).step('s', fn).toWDO();
  assert.equal('hooks' in none, false);
  assert.equal('options' in none, false);
});

test('define options become snake_case workflow options', () => {
  const w = wf({ name: 'N', description: 'D', version: 3, timeout: '1h30m', stepTimeout: 5000,
    retry: 4, concurrency: 2, rateLimit: { limit: 10, period: 60_000, key: '/t' } }).step('s', fn);
  const wdo = w.toWDO();
  assert.equal(wdo.schema, 1);
  assert.equal(wdo.version, '3');
  assert.deepEqual(wdo.options, {
    timeout: '90m', step_timeout: '5s', retry: { max_attempts: 4, backoff: 'exponential' },
    concurrency: { limit: 2 }, rate_limit: { limit: 10, period: '1m', key: '/t' },
  });
  assert.equal('triggers' in wdo, false);
});

test('if / elseIf / else / endIf with generated condition handler names', () => {
  const c0 = () => true;
  const c1 = () => false;
  const w = wf().if('check', c0).step('x', fn).elseIf('other', c1).step('y', fn).else().step('z', fn).endIf().step('after', fn);
  assert.deepEqual(w.toWDO().nodes, [
    { type: 'if', id: 'check', branches: [
      { condition: 'check.condition.0', nodes: [{ type: 'step', id: 'x', handler: 'x' }] },
      { condition: 'check.condition.1', nodes: [{ type: 'step', id: 'y', handler: 'y' }] },
    ], else: [{ type: 'step', id: 'z', handler: 'z' }] },
    { type: 'step', id: 'after', handler: 'after' },
  ]);
  assert.equal(w.handlers().get('check.condition.0'), c0);
  assert.equal(w.handlers().get('check.condition.1'), c1);
});

test('parallel and race take an array of branch functions; ids are generated or named', () => {
  const w = wf().parallel([(b) => b.step('a', fn), (b) => b.step('b', fn)])
    .race('first', [(b) => b.step('c', fn)]).parallel([(b) => b.step('d', fn)]);
  const [p, r, p2] = w.toWDO().nodes;
  assert.deepEqual(p, { type: 'parallel', id: 'parallel-1', branches: [
    { nodes: [{ type: 'step', id: 'a', handler: 'a' }] }, { nodes: [{ type: 'step', id: 'b', handler: 'b' }] }] });
  assert.deepEqual(r, { type: 'race', id: 'first', branches: [{ nodes: [{ type: 'step', id: 'c', handler: 'c' }] }] });
  assert.equal(p2.id, 'parallel-2');
});

test('forEach, batch and while', () => {
  const items = () => [];
  const cond = () => false;
  const w = wf().forEach('each', items, (b) => b.step('one', fn), { concurrency: 3 })
    .batch('chunks', items, 10, (b) => b.step('many', fn))
    .while('loop', cond, (b) => b.step('again', fn), { maxIterations: 5 })
    .while('loop2', cond, (b) => b.step('again2', fn));
  assert.deepEqual(w.toWDO().nodes, [
    { type: 'for_each', id: 'each', items: 'each.items', nodes: [{ type: 'step', id: 'one', handler: 'one' }], concurrency: 3 },
    { type: 'batch', id: 'chunks', items: 'chunks.items', size: 10, nodes: [{ type: 'step', id: 'many', handler: 'many' }] },
    { type: 'while', id: 'loop', condition: 'loop.condition', nodes: [{ type: 'step', id: 'again', handler: 'again' }], max_iterations: 5 },
    { type: 'while', id: 'loop2', condition: 'loop2.condition', nodes: [{ type: 'step', id: 'again2', handler: 'again2' }], max_iterations: 1000 },
  ]);
  assert.equal(w.handlers().get('each.items'), items);
  assert.equal(w.handlers().get('loop.condition'), cond);
});

test('sleep, pause, humanInTheLoop, waitForEvent, subflow, cancel', () => {
  const onPause = () => {};
  const payload = () => ({});
  const w = wf().sleep('s1', '5m').sleep('s2', 1500).sleep('s3', new Date('2030-01-31T09:00:00Z'))
    .sleep('s4', '2030-01-31T09:00:00+01:00')
    .pause('p', { timeout: '1d', onTimeout: 'continue', onPause }).humanInTheLoop('h')
    .waitForEvent('w', 'paid', { match: { id: 1 }, timeout: '1h' })
    .subflow('sub', 'other', { payload }).cancel('c', 'why').cancel('c2');
  assert.deepEqual(w.toWDO().nodes, [
    { type: 'sleep', id: 's1', duration: '5m' },
    { type: 'sleep', id: 's2', duration: '1500ms' },
    { type: 'sleep', id: 's3', until: '2030-01-31T09:00:00.000Z' },
    { type: 'sleep', id: 's4', until: '2030-01-31T09:00:00+01:00' },
    { type: 'pause', id: 'p', timeout: '1d', on_timeout: 'continue', on_pause: 'p.onPause' },
    { type: 'pause', id: 'h', on_timeout: 'fail' },
    { type: 'wait_for_event', id: 'w', event: 'paid', match: { id: 1 }, timeout: '1h', on_timeout: 'fail' },
    { type: 'subflow', id: 'sub', workflow: 'other', payload: 'sub.payload' },
    { type: 'cancel', id: 'c', reason: 'why' },
    { type: 'cancel', id: 'c2' },
  ]);
  assert.deepEqual([...w.handlers().keys()], ['p.onPause', 'sub.payload']);
});

test('triggers', () => {
  const poller = () => [];
  const w = wf().manual().onSchedule('0 9 * * *', { timezone: 'UTC' }).onInterval('5m')
    .onWebhook('/h', { method: 'put', secret: 's', maxBodySize: 1024 }).onEvent('e.x')
    .onPoll('poller', poller, { every: 30_000, key: '/id' }).step('s', fn);
  assert.deepEqual(w.toWDO().triggers, [
    { type: 'manual' },
    { type: 'schedule', cron: '0 9 * * *', timezone: 'UTC' },
    { type: 'interval', every: '5m' },
    { type: 'webhook', path: '/h', method: 'PUT', secret: 's', max_body_size: 1024 },
    { type: 'event', name: 'e.x' },
    { type: 'poll', handler: 'poller', every: '30s', key: '/id' },
  ]);
  assert.equal(w.handlers().get('poller'), poller);
});

test('toWDO returns a fresh JSON copy and workflows() lists definitions', () => {
  const w = wf().step('s', fn);
  const a = w.toWDO();
  a.nodes.push('junk');
  assert.equal(w.toWDO().nodes.length, 1);
  assert.deepEqual(JSON.parse(JSON.stringify(w)), w.toWDO());
  assert.ok(cronflow.workflows().includes(w));
  assert.ok(CronflowDefinitionError.prototype instanceof Error);
});
