// The JavaScript side of the `node_quickstart` example: workflows written with the cronflow
// SDK. In a project of your own this import is `import { cronflow } from 'cronflow';`.
import { cronflow } from '../../cronflow-executor-node/js/src/index.js';

cronflow
  .define({ id: 'js-order', retry: { maxAttempts: 3, backoff: 'fixed', delay: '50ms' } })
  .step('reserve-stock', (ctx) => {
    if (ctx.run.attempt === 1) {
      // The first attempt fails; Rust retries it 50 ms later, maybe on another worker
      // (workers share nothing: keep state in the payload, step outputs or your database).
      throw Object.assign(new Error('warehouse busy'), { name: 'WarehouseBusy' });
    }
    ctx.log.info('reserved', { items: ctx.payload.items });
    return { reserved: ctx.payload.items, attempt: ctx.run.attempt };
  })
  .if('international', (ctx) => ctx.payload.country !== 'FR')
  .step('customs-declaration', () => 'CN22 filed')
  .else()
  .step('domestic-label', () => 'Colissimo label')
  .endIf()
  .parallel([
    (b) => b.step('email', (ctx) => `email to customer ${ctx.payload.customer}`),
    (b) => b.step('sms', () => 'sms sent'),
  ]);
