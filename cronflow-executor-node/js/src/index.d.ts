// Type declarations of the cronflow JavaScript SDK (definition side).

/** `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"`, or whole milliseconds. */
export type Duration = string | number;

/** Thrown when a workflow definition is invalid; the message names the offending call. */
export class CronflowDefinitionError extends Error {
  name: 'CronflowDefinitionError';
}

export interface RetryOptions {
  /** Total attempts including the first (at least 1). */
  maxAttempts: number;
  /** Default `'exponential'`. */
  backoff?: 'fixed' | 'linear' | 'exponential';
  delay?: Duration;
  maxDelay?: Duration;
  multiplier?: number;
  jitter?: boolean;
  /** Only errors with these names are retried. */
  retryOn?: string[];
}

/** A number is shorthand for `{ maxAttempts: n }`. */
export type Retry = number | RetryOptions;

export interface DefineOptions {
  /** Workflow id: letters, digits, `_`, `.`, `:` and `-`. */
  id: string;
  name?: string;
  description?: string;
  version?: string | number;
  /** Whole-run timeout. */
  timeout?: Duration;
  /** Default timeout of each task. */
  stepTimeout?: Duration;
  /** Default retry policy of each task. */
  retry?: Retry;
  /** A number is shorthand for `{ limit }`; `key` is a JSON pointer into the payload. */
  concurrency?: number | { limit: number; key?: string };
  rateLimit?: { limit: number; period: Duration; key?: string };
  /**
   * Folds a burst of triggers (per value of `key`, a JSON pointer into the payload) into one
   * run, `window` after the last, with the last payload. A duration is shorthand for `{ window }`.
   */
  debounce?: Duration | { window: Duration; key?: string };
  /**
   * Run once the tree has finished, before the run's end is recorded (handler names
   * `<workflow id>.onSuccess` / `.onFailure`). `onSuccess` reads the output in `ctx.last`,
   * `onFailure` the failure in `ctx.error`. A hook's failure does not change the outcome.
   */
  hooks?: { onSuccess?: Handler; onFailure?: Handler };
}

/** What the handler is called for (`ctx.kind`). */
export type TaskKind =
  | 'step'
  | 'action'
  | 'condition'
  | 'poll'
  | 'items'
  | 'on_error'
  | 'on_pause'
  | 'payload'
  | 'hook';

/** A recorded task failure, as `ctx.error` gives it: a real `Error`. */
export interface TaskError extends Error {
  name: string;
  message: string;
  /** The original stack, or `name: message` when the failure had none. */
  stack: string;
  code?: string;
}

/** What a handler receives (provided by the worker runtime). */
export interface StepContext<P = any> {
  payload: P;
  steps: Record<string, { output: any }>;
  last: any;
  /** What the trigger source recorded of the delivery (a webhook's method, path, headers and raw body), or null. */
  trigger: any;
  run: { id: string; workflowId: string; attempt: number };
  idempotencyKey: string;
  /** When the attempt times out (the engine enforces it), or null. */
  deadline: Date | null;
  /** Aborted when the engine cancels the task. */
  signal: AbortSignal;
  log: {
    debug(message: string, fields?: Record<string, unknown>): void;
    info(message: string, fields?: Record<string, unknown>): void;
    warn(message: string, fields?: Record<string, unknown>): void;
    error(message: string, fields?: Record<string, unknown>): void;
  };
  /** What the handler is called for. */
  kind: TaskKind;
  /** Inside a `forEach` body, the current item; inside a `batch` body, the chunk (an array). */
  item?: any;
  /** Inside a `forEach`, `batch` or `while` body, the iteration's index from 0. */
  index?: number;
  /** For an `onPause` handler, the token that resumes the pause. */
  token?: string;
  /** For an `onError` handler or the `onFailure` hook, the error that ended the attempts. */
  error?: TaskError;
  /** The workflow's durable key-value state; `state.global` is shared by every workflow. */
  state: WorkflowState;
}

/**
 * Durable key-value state of one namespace, kept by the engine's store. Values are JSON;
 * failures reject with an Error whose `name` says why (`InvalidStateKey`, `InvalidStateValue`,
 * `InvalidStateTtl`, `StateValueTooLarge`, `NotAnInteger`, `IncrOverflow`, `StoreError`, ...).
 */
export interface StateScope {
  /** The value, or `undefined` when the key is not set or has expired. */
  get<T = any>(key: string): Promise<T | undefined>;
  /** Sets the value; with `ttl` ("10m", or milliseconds) it reads as absent once that has passed. */
  set(key: string, value: unknown, options?: { ttl?: Duration }): Promise<void>;
  /** Atomically adds `by` (default 1, may be negative) to an integer value (absent: 0); the new value. */
  incr(key: string, by?: number): Promise<number>;
  /** Deletes the key; whether it had a live value. */
  delete(key: string): Promise<boolean>;
}

/** `ctx.state`: the workflow's own namespace, plus `global`. */
export interface WorkflowState extends StateScope {
  readonly global: StateScope;
}

export type Handler<T = any> = (ctx: StepContext) => T | Promise<T>;

export interface TaskOptions {
  timeout?: Duration;
  retry?: Retry;
  /**
   * Called with `ctx.error` once the attempts are exhausted (handler name `<id>.onError`);
   * its output stands in for the node's output. Throw to fail the node after all.
   */
  onError?: Handler;
}

export type OnTimeout = 'fail' | 'continue';

export interface PauseOptions {
  timeout?: Duration;
  /** Default `'fail'`. */
  onTimeout?: OnTimeout;
  /** Called with the resume token (handler name `<id>.onPause`). */
  onPause?: Handler;
}

export interface WaitForEventOptions {
  /** Fields the event payload must contain with these values. */
  match?: Record<string, unknown>;
  timeout?: Duration;
  onTimeout?: OnTimeout;
}

export type BranchFn = (branch: SequenceBuilder) => unknown;

/** The node builders, shared by a workflow and by bodies and branches. Node ids are the names. */
export interface SequenceBuilder {
  step(name: string, fn: Handler, options?: TaskOptions): this;
  action(name: string, fn: Handler, options?: TaskOptions): this;
  /** Sets the retry policy of the last step or action. */
  retry(policy: Retry): this;
  /** Sets the timeout of the last step or action. */
  timeout(duration: Duration): this;
  /** Sets the error handler of the last step or action (as the `onError` option does). */
  onError(fn: Handler): this;
  /** Condition handlers are named `<id>.condition.<i>`. */
  if(name: string, condition: Handler): this;
  /** `name` labels the branch in error messages. */
  elseIf(name: string, condition: Handler): this;
  elseIf(condition: Handler): this;
  else(): this;
  endIf(): this;
  /** Each function receives a branch builder; an unnamed node gets the id `parallel-<n>`. */
  parallel(branches: BranchFn[]): this;
  parallel(name: string, branches: BranchFn[]): this;
  race(branches: BranchFn[]): this;
  race(name: string, branches: BranchFn[]): this;
  /** The items handler is named `<id>.items`. */
  forEach(name: string, items: Handler<unknown[]>, body: BranchFn, options?: { concurrency?: number }): this;
  batch(name: string, items: Handler<unknown[]>, size: number, body: BranchFn): this;
  /** The condition handler is named `<id>.condition`; `maxIterations` defaults to 1000. */
  while(name: string, condition: Handler, body: BranchFn, options?: { maxIterations?: number }): this;
  /** A duration, or a `Date` / RFC 3339 time to sleep until. */
  sleep(name: string, durationOrDate: Duration | Date): this;
  pause(name: string, options?: PauseOptions): this;
  humanInTheLoop(name: string, options?: PauseOptions): this;
  waitForEvent(name: string, event: string, options?: WaitForEventOptions): this;
  /** The payload handler is named `<id>.payload`; without it the child gets the parent's payload. */
  subflow(name: string, workflow: string | WorkflowBuilder, options?: { payload?: Handler }): this;
  cancel(name: string, reason?: string): this;
}

export interface WebhookOptions {
  method?: string;
  secret?: string;
  /** Further settings, emitted with snake_case keys. */
  [setting: string]: unknown;
}

/** A JSON workflow definition object, schema 1 (see the Rust `WorkflowDef`). */
export interface WDO {
  schema: 1;
  id: string;
  version?: string;
  name?: string;
  description?: string;
  triggers?: Array<Record<string, unknown> & { type: string }>;
  options?: Record<string, unknown>;
  hooks?: { on_success?: string; on_failure?: string };
  nodes: Array<Record<string, unknown> & { type: string; id: string }>;
}

export interface WorkflowBuilder extends SequenceBuilder {
  readonly id: string;
  onSchedule(cron: string, options?: { timezone?: string }): this;
  onInterval(every: Duration): this;
  onWebhook(path: string, options?: WebhookOptions): this;
  onEvent(name: string): this;
  /** `fn` returns new items; `key` is a JSON pointer to each item's dedupe key. */
  onPoll(name: string, fn: Handler<unknown[]>, options: { every: Duration; key?: string }): this;
  manual(): this;
  /** Handler name -> function, for the worker runtime. */
  handlers(): Map<string, Handler>;
  /** A fresh plain JSON object; throws if an `.if()` is unclosed or there are no nodes. */
  toWDO(): WDO;
  toJSON(): WDO;
}

export const SCHEMA_VERSION: 1;
export function define(options: DefineOptions): WorkflowBuilder;
/** Every workflow defined so far in this module instance, in definition order. */
export function workflows(): WorkflowBuilder[];
export function parseDuration(value: Duration): number;
export function formatDuration(ms: number): string;

export const cronflow: {
  readonly define: typeof define;
  readonly workflows: typeof workflows;
  readonly SCHEMA_VERSION: 1;
};
export default cronflow;
