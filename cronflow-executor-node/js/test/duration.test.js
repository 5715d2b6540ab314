import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../src/index.js';

test('parses and formats like the Rust engine', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration(' 2h '), 7_200_000);
  assert.equal(parseDuration(1500), 1500);
  assert.throws(() => parseDuration('5'), /no unit/);
  assert.throws(() => parseDuration('5y'), /unknown unit/);
  assert.throws(() => parseDuration('-5s'), /not a duration/);
  assert.throws(() => parseDuration(-1), /non-negative/);
  assert.throws(() => parseDuration(1.5), /whole number/);
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatDuration(90_000), '90s');
  assert.equal(formatDuration(120_000), '2m');
  assert.equal(formatDuration(86_400_000), '1d');
  assert.equal(formatDuration(1500), '1500ms');
});
