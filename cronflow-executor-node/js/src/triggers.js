// Trigger declarations: what starts runs of a workflow besides the host's API.

import { checkKeys, show } from './errors.js';
import { wdoDuration } from './duration.js';
import { jsonValue } from './options.js';

const METHOD = /^[A-Za-z]+$/;

/** `{ type: 'schedule', cron, timezone? }`. */
export function schedule(cron, options, fail) {
  if (typeof cron !== 'string' || cron.trim() === '') {
    fail(`the cron expression must be a non-empty string such as '0 9 * * 1', found ${show(cron)}`);
  }
  const opts = checkKeys(options, ['timezone'], fail);
  const trigger = { type: 'schedule', cron };
  if (opts.timezone !== undefined) {
    const tz = opts.timezone;
    try {
      if (typeof tz !== 'string' || tz === '') throw new Error();
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
    } catch {
      fail(`timezone must be an IANA time zone such as 'Europe/Paris', found ${show(tz)}`);
    }
    trigger.timezone = tz;
  }
  return trigger;
}

/** `{ type: 'interval', every }`. */
export function interval(every, fail) {
  return { type: 'interval', every: wdoDuration(every, 'interval', fail, { positive: true }) };
}

/**
 * `{ type: 'webhook', path, method?, ...settings }`. Further settings are passed to the
 * engine's webhook server with their keys in snake_case (`signatureHeader` -> `signature_header`).
 */
export function webhook(path, options, fail) {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    fail(`the webhook path must be a string starting with '/', such as '/hooks/orders', found ${show(path)}`);
  }
  const opts = checkKeys(options, Object.keys(options ?? {}), fail);
  const trigger = { type: 'webhook', path };
  for (const [key, value] of Object.entries(opts)) {
    if (value === undefined) continue;
    if (key === 'method') {
      if (typeof value !== 'string' || !METHOD.test(value)) {
        fail(`method must be an HTTP method such as 'POST', found ${show(value)}`);
      }
      trigger.method = value.toUpperCase();
      continue;
    }
    const wdoKey = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    if (wdoKey === 'type' || wdoKey === 'path') fail(`option '${key}' is reserved`);
    if (key === 'secret' && typeof value !== 'string') {
      fail(`secret must be a string, found ${show(value)}`);
    }
    trigger[wdoKey] = jsonValue(value, key, fail);
  }
  return trigger;
}

/** `{ type: 'event', name }`. */
export function event(name, fail) {
  if (typeof name !== 'string' || name.trim() === '') {
    fail(`the event name must be a non-empty string, found ${show(name)}`);
  }
  return { type: 'event', name };
}

/** `{ type: 'poll', handler, every, key? }`; `handler` is registered by the caller. */
export function poll(handler, options, fail) {
  const opts = checkKeys(options, ['every', 'key'], fail);
  if (opts.every === undefined) fail(`'every' is required, such as { every: '5m' }`);
  const trigger = { type: 'poll', handler, every: wdoDuration(opts.every, 'every', fail, { positive: true }) };
  if (opts.key !== undefined) {
    if (typeof opts.key !== 'string') fail(`key must be a JSON pointer such as '/id', found ${show(opts.key)}`);
    trigger.key = opts.key;
  }
  return trigger;
}
