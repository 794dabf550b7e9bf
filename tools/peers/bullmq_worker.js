// One BullMQ worker process for tools/bench_peers.sh: a no-op processor on
// QUEUE with CONCURRENCY jobs in flight, every other Worker option at
// BullMQ's default (completed jobs are kept: removeOnComplete is unset).
// Touches READY_FILE once its Redis connections are up; closes on SIGTERM.
//
//   node bullmq_worker.js REDIS_SOCK QUEUE CONCURRENCY READY_FILE
'use strict';
const fs = require('fs');
const { Worker } = require('bullmq');

const [sock, queue, concurrency, readyFile] = process.argv.slice(2);
if (!readyFile) {
  console.error('usage: bullmq_worker.js REDIS_SOCK QUEUE CONCURRENCY READY_FILE');
  process.exit(2);
}
const worker = new Worker(queue, async () => {}, {
  connection: { path: sock },
  concurrency: Number(concurrency),
});
worker.on('error', (e) => console.error(`bullmq_worker ${process.pid}: ${e.message}`));
worker.waitUntilReady().then(
  () => fs.writeFileSync(readyFile, `${process.pid}\n`),
  (e) => { console.error(`bullmq_worker ${process.pid}: not ready: ${e.message}`); process.exit(1); });

let closing = false;
process.on('SIGTERM', () => {
  if (closing) return;
  closing = true;
  // close() waits for the jobs in flight; a stuck close must not keep the
  // bench waiting, so the process leaves after 5 s regardless.
  setTimeout(() => process.exit(0), 5000).unref();
  worker.close().then(() => process.exit(0), () => process.exit(1));
});
