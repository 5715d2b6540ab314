import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cronflow, CronflowDefinitionError } from '../src/index.js';

const fn = () => null;
let n = 0;
const wf = () => cronflow.define({ id: `errors-${++n}` });

function throwsDef(build, pattern) {
  assert.throws(build, (e) => {
    assert.ok(e instanceof CronflowDefinitionError, `expected CronflowDefinitionError, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('define errors', () => {
  throwsDef(() => cronflow.define(), /expects an object/);
  throwsDef(() => cronflow.define({ id: 'has space' }), /may contain only/);
  throwsDef(() => cronflow.define({ id: 'e-x', retries: 3 }), /unknown option 'retries'/);
  throwsDef(() => cronflow.define({ id: 'e-y', timeout: '5 minutes' }), /invalid timeout/);
  throwsDef(() => cronflow.define({ id: 'e-z', concurrency: 0 }), /concurrency: limit must be/);
  throwsDef(() => cronflow.define({ id: 'e-h1', hooks: { onSucces: fn } }), /\('e-h1'\): hooks: unknown option 'onSucces' \(known options: 'onSuccess', 'onFailure'\)/);
  throwsDef(() => cronflow.define({ id: 'e-h2', hooks: { onFailure: 'alert' } }), /hooks: onFailure must be a function, found 'alert'/);
  throwsDef(() => cronflow.define({ id: 'e-h3', hooks: [fn] }), /hooks: options must be an object/);
  throwsDef(() => cronflow.define({ id: 'e-d1', debounce: { key: '/c' } }), /debounce: 'window' is required/);
  throwsDef(() => cronflow.define({ id: 'e-d2', debounce: '0s' }), /debounce: window must be greater than zero/);
  throwsDef(() => cronflow.define({ id: 'e-d3', debounce: { window: 'soon' } }), /debounce: invalid window/);
  throwsDef(() => cronflow.define({ id: 'e-d4', debounce: { window: '1s', key: 'customer' } }), /debounce: key must be a JSON pointer/);
  throwsDef(() => cronflow.define({ id: 'e-d5', debounce: { window: '1s', every: 1 } }), /debounce: unknown option 'every'/);
  cronflow.define({ id: 'e-dup' });
  throwsDef(() => cronflow.define({ id: 'e-dup' }), /already defined/);
});

test('node errors name the offending call', () => {
  throwsDef(() => wf().step('a', fn).step('a', fn), /\.step\('a'\): duplicate name 'a'/);
  throwsDef(() => wf().step('a', fn).forEach('a', fn, (b) => b.step('x', fn)), /\.forEach\('a'\): duplicate/);
  throwsDef(() => wf().step('bad name', fn), /\.step\('bad name'\): the name .* may contain only/);
  throwsDef(() => wf().step('a', 'nope'), /the handler must be a function/);
  throwsDef(() => wf().step('a', fn, { timout: 1 }), /unknown option 'timout'/);
  throwsDef(() => wf().step('a', fn, { timeout: 'soon' }), /invalid timeout/);
  throwsDef(() => wf().step('a', fn, { retry: { backoff: 'fixed' } }), /'maxAttempts' is required/);
  throwsDef(() => wf().step('a', fn).retry({ maxAttempts: 2, backoff: 'random' }), /backoff must be/);
  throwsDef(() => wf().retry(3), /\.retry\(\): must follow \.step\(\) or \.action\(\)/);
  throwsDef(() => wf().sleep('z', '1s').timeout('1s'), /last call was \.sleep\('z'\)/);
  throwsDef(() => wf().sleep('z', 'tomorrow'), /\.sleep\('z'\): expected a duration/);
  throwsDef(() => wf().pause('p', { onTimeout: 'skip' }), /onTimeout must be/);
  throwsDef(() => wf().waitForEvent('w', ''), /event name must be/);
  throwsDef(() => wf().subflow('s', 'no way'), /workflow id/);
  throwsDef(() => wf().batch('b', fn, 0, (b) => b.step('x', fn)), /size must be/);
  throwsDef(() => wf().step('x.items', fn).forEach('x', fn, (b) => b.step('y', fn)), /handler name 'x.items'/);
  throwsDef(() => wf().step('a', fn, { onError: 'fallback' }), /\.step\('a'\): onError must be a function, found 'fallback'/);
  throwsDef(() => wf().step('a', fn).onError(null), /\.step\('a'\)\.onError\(\): the error handler must be a function, found null/);
  throwsDef(() => wf().onError(fn), /\.onError\(\): must follow \.step\(\) or \.action\(\)/);
  throwsDef(() => wf().step('a', fn).sleep('z', '1s').onError(fn), /\.onError\(\): must follow .* last call was \.sleep\('z'\)/);
  throwsDef(() => wf().action('a', fn, { onError: fn }).onError(fn), /\.action\('a'\)\.onError\(\): action 'a' already has an error handler/);
  throwsDef(() => wf().step('a.onError', fn).step('a', fn, { onError: fn }), /handler name 'a.onError' is already used/);
});

test('structure errors: empty branches, unclosed if, empty workflow', () => {
  throwsDef(() => wf().parallel([]), /non-empty array/);
  throwsDef(() => wf().parallel([(b) => b]), /branch 0: has no nodes/);
  throwsDef(() => wf().forEach('f', fn, () => {}), /\.forEach\('f'\): has no nodes/);
  throwsDef(() => wf().forEach('f', fn, async (b) => b.step('x', fn)), /synchronously/);
  throwsDef(() => wf().if('i', fn).elseIf('j', fn), /branch of \.if\('i'\) is empty/);
  throwsDef(() => wf().if('i', fn).step('x', fn).toWDO(), /\.if\('i'\): is never closed/);
  throwsDef(() => wf().endIf(), /no matching \.if\(\)/);
  throwsDef(() => wf().if('i', fn).step('x', fn).else().step('y', fn).else(), /already has an \.else\(\)/);
  throwsDef(() => wf().toWDO(), /the workflow has no steps/);
});

test('trigger errors', () => {
  throwsDef(() => wf().onSchedule(''), /\.onSchedule\(''\): the cron expression/);
  throwsDef(() => wf().onSchedule('* * * * *', { timezone: 'Mars/Base' }), /IANA time zone/);
  throwsDef(() => wf().onInterval('0s'), /greater than zero/);
  throwsDef(() => wf().onWebhook('hooks'), /must be a string starting with '\/'/);
  throwsDef(() => wf().onWebhook('/h', { path: '/x' }), /reserved/);
  throwsDef(() => wf().onWebhook('/h', { handler: fn }), /must be JSON data/);
  throwsDef(() => wf().onEvent(' '), /event name/);
  throwsDef(() => wf().onPoll('p', fn, {}), /'every' is required/);
});
