// Workflows that together use every builder, option and trigger of the SDK. The Rust test
// `tests/js_sdk.rs` reads their WDOs (printed by `emit-wdos.mjs`) with `WorkflowDef::from_json`.

import { cronflow } from '../src/index.js';

const noop = () => null;
const yes = () => true;
const items = () => [1, 2, 3];

export const child = cronflow
  .define({ id: 'catalog-child', version: 2 })
  .manual()
  .step('child-step', noop);

export const full = cronflow
  .define({
    id: 'catalog-full',
    name: 'Every builder',
    description: 'Uses every node kind, option and trigger',
    version: '1.2.0',
    timeout: '1h',
    stepTimeout: 30_000,
    retry: { maxAttempts: 3, backoff: 'linear', delay: '500ms', maxDelay: '10s', jitter: true },
    concurrency: { limit: 4, key: '/customerId' },
    rateLimit: { limit: 100, period: '1m', key: '/tenant' },
    debounce: { window: '2s', key: '/customerId' },
    hooks: { onSuccess: noop, onFailure: noop },
  })
  .manual()
  .onSchedule('0 9 * * 1-5', { timezone: 'Europe/Paris' })
  .onInterval('5m')
  .onWebhook('/hooks/orders', { method: 'post', secret: 'shh', signatureHeader: 'x-signature' })
  .onEvent('order.created')
  .onPoll('poll-orders', items, { every: '30s', key: '/id' })
  .step('validate', noop, { timeout: '5s', retry: 2, onError: noop })
  .action('audit', noop)
  .retry({ maxAttempts: 5, backoff: 'exponential', multiplier: 3, retryOn: ['TimeoutError'] })
  .timeout(1500)
  .onError(noop)
  .if('big-order', yes)
  .step('approve', noop)
  .elseIf('medium-order', yes)
  .step('review', noop)
  .else()
  .step('auto-approve', noop)
  .endIf()
  .parallel('notify', [(b) => b.step('email', noop), (b) => b.step('sms', noop).action('log-sms', noop)])
  .race([(b) => b.step('fast', noop), (b) => b.sleep('slow', '10s')])
  .forEach('each-line', items, (body) => body.step('reserve', noop).onError(noop), { concurrency: 2 })
  .batch('chunks', items, 50, (body) => body.step('upload', noop))
  .while('poll-status', yes, (body) => body.step('check', noop).sleep('backoff', '1m'), { maxIterations: 10 })
  .sleep('cool-down', 250)
  .sleep('until-date', new Date('2030-01-31T09:00:00Z'))
  .sleep('until-offset', '2030-01-31T09:00:00+01:00')
  .pause('approval', { timeout: '2d', onTimeout: 'continue', onPause: noop })
  .humanInTheLoop('second-look')
  .waitForEvent('paid', 'payment.received', { match: { orderId: 42 }, timeout: '1h', onTimeout: 'fail' })
  .waitForEvent('shipped', 'shipment.sent')
  .subflow('run-child', child, { payload: noop })
  .subflow('run-child-again', 'catalog-child')
  .cancel('stop', 'done testing')
  .cancel('stop-quietly');

export const minimal = cronflow.define({ id: 'catalog-minimal' }).step('only', noop);

export const nested = cronflow
  .define({ id: 'catalog-nested' })
  .onInterval(60_000)
  .forEach('outer', items, (outer) =>
    outer.if('inner-if', yes).parallel([(b) => b.step('deep', noop)]).endIf(),
  );
