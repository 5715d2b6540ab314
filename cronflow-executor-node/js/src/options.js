// Option objects shared by workflows and tasks: retry policies, concurrency and rate limits.
// The SDK takes camelCase and emits the snake_case fields of the Rust model.

import { checkKeys, show } from './errors.js';
import { wdoDuration } from './duration.js';

const RETRY_KEYS = ['maxAttempts', 'backoff', 'delay', 'maxDelay', 'multiplier', 'jitter', 'retryOn'];
const BACKOFFS = ['fixed', 'linear', 'exponential'];

/** A positive whole number (u32) or a failure naming `what`. */
export function positiveInt(value, what, fail) {
  if (!Number.isSafeInteger(value) || value < 1 || value > 0xffff_ffff) {
    fail(`${what} must be a whole number of at least 1, found ${show(value)}`);
  }
  return value;
}

/**
 * A retry policy: `3` (three attempts, exponential backoff) or
 * `{ maxAttempts, backoff, delay, maxDelay, multiplier, jitter, retryOn }`.
 */
export function retryPolicy(value, fail) {
  const sub = (message) => fail(`retry: ${message}`);
  if (typeof value === 'number') {
    return { max_attempts: positiveInt(value, 'maxAttempts', sub), backoff: 'exponential' };
  }
  const options = checkKeys(value, RETRY_KEYS, sub);
  if (options.maxAttempts === undefined) sub(`'maxAttempts' is required, such as { maxAttempts: 3 }`);
  const policy = { max_attempts: positiveInt(options.maxAttempts, 'maxAttempts', sub) };
  const backoff = options.backoff ?? 'exponential';
  if (!BACKOFFS.includes(backoff)) {
    sub(`backoff must be 'fixed', 'linear' or 'exponential', found ${show(backoff)}`);
  }
  policy.backoff = backoff;
  if (options.delay !== undefined) policy.delay = wdoDuration(options.delay, 'delay', sub);
  if (options.maxDelay !== undefined) {
    policy.max_delay = wdoDuration(options.maxDelay, 'maxDelay', sub);
  }
  if (options.multiplier !== undefined) {
    const m = options.multiplier;
    if (typeof m !== 'number' || !Number.isFinite(m) || m <= 0) {
      sub(`multiplier must be a number greater than zero, found ${show(m)}`);
    }
    policy.multiplier = m;
  }
  if (options.jitter !== undefined) {
    if (typeof options.jitter !== 'boolean') sub(`jitter must be true or false, found ${show(options.jitter)}`);
    if (options.jitter) policy.jitter = true;
  }
  if (options.retryOn !== undefined) {
    const names = options.retryOn;
    if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n.trim() === '')) {
      sub(`retryOn must be an array of error names, such as ['TimeoutError']`);
    }
    if (names.length) policy.retry_on = [...names];
  }
  return policy;
}

/** `5` or `{ limit, key }`. */
export function concurrency(value, fail) {
  const sub = (message) => fail(`concurrency: ${message}`);
  if (typeof value === 'number') return { limit: positiveInt(value, 'limit', sub) };
  const options = checkKeys(value, ['limit', 'key'], sub);
  const out = { limit: positiveInt(options.limit, 'limit', sub) };
  if (options.key !== undefined) out.key = jsonPointer(options.key, sub);
  return out;
}

/** `{ limit, period, key }`. */
export function rateLimit(value, fail) {
  const sub = (message) => fail(`rateLimit: ${message}`);
  const options = checkKeys(value, ['limit', 'period', 'key'], sub);
  const out = { limit: positiveInt(options.limit, 'limit', sub) };
  if (options.period === undefined) sub(`'period' is required, such as '1m'`);
  out.period = wdoDuration(options.period, 'period', sub, { positive: true });
  if (options.key !== undefined) out.key = jsonPointer(options.key, sub);
  return out;
}

/** `'2s'` (the window) or `{ window, key }`. */
export function debounce(value, fail) {
  const sub = (message) => fail(`debounce: ${message}`);
  const options = typeof value === 'string' || typeof value === 'number' ? { window: value } : value;
  checkKeys(options, ['window', 'key'], sub);
  if (options?.window === undefined) sub(`'window' is required, such as { window: '2s' }`);
  const out = { window: wdoDuration(options.window, 'window', sub, { positive: true }) };
  if (options.key !== undefined) out.key = jsonPointer(options.key, sub);
  return out;
}

const HOOKS = ['onSuccess', 'onFailure'];

/** `{ onSuccess, onFailure }`: functions; returns the hooks given, in that order. */
export function hooks(value, fail) {
  const sub = (message) => fail(`hooks: ${message}`);
  const options = checkKeys(value, HOOKS, sub);
  const out = {};
  for (const hook of HOOKS) {
    const fn = options[hook];
    if (fn === undefined) continue;
    if (typeof fn !== 'function') sub(`${hook} must be a function, found ${show(fn)}`);
    out[hook] = fn;
  }
  return out;
}

function jsonPointer(value, fail) {
  if (typeof value !== 'string' || !(value === '' || value.startsWith('/'))) {
    fail(`key must be a JSON pointer into the payload such as '/customerId', found ${show(value)}`);
  }
  return value;
}

/** 'fail' (the default) or 'continue'. */
export function onTimeout(value, fail) {
  const v = value ?? 'fail';
  if (v !== 'fail' && v !== 'continue') {
    fail(`onTimeout must be 'fail' or 'continue', found ${show(value)}`);
  }
  return v;
}

/** A JSON value (plain objects, arrays, strings, finite numbers, booleans, null), deep-copied. */
export function jsonValue(value, what, fail) {
  const seen = new Set();
  const copy = (v, path) => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail(`${what}${path} must be a finite number, found ${v}`);
      return v;
    }
    if (typeof v === 'object' && !seen.has(v)) {
      const proto = Object.getPrototypeOf(v);
      if (Array.isArray(v) || proto === Object.prototype || proto === null) {
        seen.add(v);
        const out = Array.isArray(v)
          ? v.map((x, i) => copy(x, `${path}[${i}]`))
          : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copy(x, `${path}.${k}`)]));
        seen.delete(v);
        return out;
      }
    }
    return fail(`${what}${path} must be JSON data, found ${show(v)}`);
  };
  return copy(value, '');
}
