// Durations as the WDO writes them: "250ms", "30s", "5m", "2h", "1d", compound "1h30m", or
// whole milliseconds. The SDK always emits the normalised string form of the Rust engine
// (`format_duration`: the largest exact unit), so a WDO survives a round trip unchanged.

import { show } from './errors.js';

const UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Milliseconds of a duration string or number; throws an Error with a readable message.
 * @param {string | number} value
 * @returns {number}
 */
export function parseDuration(value) {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new Error(
        `a duration in milliseconds must be a non-negative whole number, found ${value}`,
      );
    }
    return value;
  }
  if (typeof value !== 'string') {
    throw new Error(
      `expected a duration such as "30s", "5m" or "250ms" (or whole milliseconds), found ${show(value)}`,
    );
  }
  const text = value.trim();
  if (text === '') throw new Error('empty duration');
  let total = 0;
  const part = /(\d*)(\D*)/y;
  part.lastIndex = 0;
  while (part.lastIndex < text.length) {
    const [, digits, unit] = part.exec(text);
    if (digits === '') {
      throw new Error(`'${value}' is not a duration like "30s", "5m" or "250ms"`);
    }
    if (unit === '') throw new Error(`'${value}' has no unit (use ms, s, m, h or d)`);
    const size = UNITS[unit];
    if (size === undefined) {
      throw new Error(`'${value}' has unknown unit '${unit}' (use ms, s, m, h or d)`);
    }
    total += Number(digits) * size;
  }
  if (!Number.isSafeInteger(total)) throw new Error(`'${value}' is too large`);
  return total;
}

/** The string form of `ms` milliseconds, with the largest exact unit ("90s", "2m", "1500ms"). */
export function formatDuration(ms) {
  if (ms === 0) return '0ms';
  for (const unit of ['d', 'h', 'm', 's']) {
    if (ms % UNITS[unit] === 0) return `${ms / UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/** Parses and normalises a duration, reporting a problem through `fail(message)`. */
export function wdoDuration(value, what, fail, { positive = false } = {}) {
  let ms;
  try {
    ms = parseDuration(value);
  } catch (e) {
    fail(`invalid ${what}: ${e.message}`);
  }
  if (positive && ms === 0) fail(`${what} must be greater than zero`);
  return formatDuration(ms);
}
