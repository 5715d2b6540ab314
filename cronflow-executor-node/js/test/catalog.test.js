import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cronflow } from '../src/index.js';
import { full, nested } from '../scripts/catalog.mjs';

test('the full example uses every builder and registers every handler', () => {
  const wdo = full.toWDO();
  const kinds = new Set();
  const walk = (nodes) => {
    for (const node of nodes) {
      kinds.add(node.type);
      for (const b of node.branches ?? []) walk(b.nodes);
      if (node.else) walk(node.else);
      if (node.nodes) walk(node.nodes);
    }
  };
  walk(wdo.nodes);
  assert.deepEqual([...kinds].sort(), ['action', 'batch', 'cancel', 'for_each', 'if', 'parallel',
    'pause', 'race', 'sleep', 'step', 'subflow', 'wait_for_event', 'while']);
  assert.deepEqual(wdo.triggers.map((t) => t.type), ['manual', 'schedule', 'interval', 'webhook', 'event', 'poll']);
  assert.deepEqual([...full.handlers().keys()], [
    'catalog-full.onSuccess', 'catalog-full.onFailure', 'poll-orders', 'validate', 'validate.onError',
    'audit', 'audit.onError', 'big-order.condition.0', 'approve', 'big-order.condition.1',
    'review', 'auto-approve', 'email', 'sms', 'log-sms', 'fast', 'each-line.items', 'reserve',
    'reserve.onError', 'chunks.items', 'upload', 'poll-status.condition', 'check', 'approval.onPause',
    'run-child.payload',
  ]);
  assert.deepEqual(wdo.hooks, { on_success: 'catalog-full.onSuccess', on_failure: 'catalog-full.onFailure' });
  assert.deepEqual(wdo.options.debounce, { window: '2s', key: '/customerId' });
  for (const f of full.handlers().values()) assert.equal(typeof f, 'function');
  assert.deepEqual(nested.toWDO().nodes, [{ type: 'for_each', id: 'outer', items: 'outer.items', nodes: [
    { type: 'if', id: 'inner-if', branches: [{ condition: 'inner-if.condition.0', nodes: [
      { type: 'parallel', id: 'parallel-1', branches: [{ nodes: [{ type: 'step', id: 'deep', handler: 'deep' }] }] },
    ] }] },
  ] }]);
  assert.deepEqual(cronflow.workflows().map((w) => w.id), ['catalog-child', 'catalog-full', 'catalog-minimal', 'catalog-nested']);
});
