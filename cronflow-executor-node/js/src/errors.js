/** Thrown when a workflow definition is invalid; the message names the offending call. */
export class CronflowDefinitionError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CronflowDefinitionError';
  }
}

/** `'text'` quoted for messages, cut to 60 characters. */
export function show(value) {
  if (typeof value === 'string') {
    const cut = value.length > 60 ? `${value.slice(0, 60)}...` : value;
    return `'${cut}'`;
  }
  if (typeof value === 'function') return `a function`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return `a Date`;
  if (typeof value === 'object') return 'an object';
  return String(value);
}

const ID_CHARS = /^[A-Za-z0-9_.:-]+$/;

/**
 * A workflow or node id: non-empty, made of letters, digits, `_`, `.`, `:` and `-` (the rule of
 * the Rust engine). Returns an error message or null.
 */
export function idProblem(value, what) {
  if (typeof value !== 'string') return `${what} must be a string, found ${show(value)}`;
  if (value === '') return `${what} must not be empty`;
  if (!ID_CHARS.test(value)) {
    const bad = [...value].find((c) => !ID_CHARS.test(c));
    return (
      `${what} ${show(value)} may contain only letters, digits, '_', '.', ':' and '-' ` +
      `(found '${bad}')`
    );
  }
  return null;
}

/** Throws when `options` (undefined or a plain object) has a key outside `allowed`. */
export function checkKeys(options, allowed, fail) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    fail(`options must be an object, found ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      const known = allowed.length ? allowed.map((k) => `'${k}'`).join(', ') : 'none';
      fail(`unknown option '${key}' (known options: ${known})`);
    }
  }
  return options;
}
