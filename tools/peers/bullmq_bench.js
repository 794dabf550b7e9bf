// The BullMQ side of tools/bench_peers.sh: with the workers already up,
// submits JOBS no-op jobs to QUEUE (Queue.addBulk, 1,000 a call), waits
// until BullMQ counts them all completed, and prints one line
//   RESULT jobs=N seconds=S rate=R p50_us=A p99_us=B redis_bytes_per_job=M
// or exits 1 saying what it was waiting for.
//
// seconds: from the first addBulk call to the largest finishedOn.
// latency: finishedOn - processedOn of each job, both set by the worker
//   (processedOn when the job moves to active, i.e. is taken off the wait
//   list; finishedOn right before the call that stores the result); BullMQ
//   keeps them in milliseconds, so the percentiles are whole milliseconds.
// bytes per job: growth of INFO used_memory from before the first addBulk to
//   after all jobs count as completed, each read once it is steady (see
//   steadyMemory), over JOBS.
//
//   node bullmq_bench.js REDIS_SOCK QUEUE JOBS TIMEOUT_S
'use strict';
const { Queue } = require('bullmq');
const IORedis = require('ioredis');

const [sock, name, jobsArg, timeoutArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const timeoutMs = Number(timeoutArg) * 1000;
if (!(jobs > 0) || !(timeoutMs > 0)) {
  console.error('usage: bullmq_bench.js REDIS_SOCK QUEUE JOBS TIMEOUT_S');
  process.exit(2);
}

async function usedMemory(r) {
  const m = /^used_memory:(\d+)/m.exec(await r.info('memory'));
  return Number(m[1]);
}

// used_memory once it has held within 4 KiB for 1.5 s.  Redis shrinks idle
// clients' query buffers only after seconds, so right after the workers
// connect, or right after a run, used_memory still holds transient buffers;
// what is measured here is what Redis keeps (the same rule as pybench.py).
async function steadyMemory(r, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last = await usedMemory(r);
  let same = 0;
  while (same < 3 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 500));
    const m = await usedMemory(r);
    same = Math.abs(m - last) <= 4096 ? same + 1 : 0;
    last = m;
  }
  return last;
}

// Nearest-rank quantile of a sorted array (the same rule as pybench.py).
function quantile(sorted, q) {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

async function main() {
  const queue = new Queue(name, { connection: { path: sock } });
  const r = new IORedis({ path: sock });
  await queue.waitUntilReady();
  const mem0 = await steadyMemory(r);

  // Wall clock on both ends: finishedOn is the worker's wall clock.
  const t0 = Date.now();
  const ids = [];
  for (let i = 0; i < jobs; i += 1000) {
    const k = Math.min(1000, jobs - i);
    const added = await queue.addBulk(Array.from({ length: k }, () => ({ name: 'noop', data: {} })));
    for (const j of added) ids.push(j.id);
  }
  const submitted = (Date.now() - t0) / 1000;

  const deadline = Date.now() + timeoutMs;
  let c;
  for (;;) {
    c = await queue.getJobCounts('completed', 'failed', 'active', 'wait', 'prioritized', 'delayed');
    if (c.completed + c.failed >= jobs) break;
    if (Date.now() > deadline) {
      console.error(`bullmq_bench: after ${timeoutArg} s still waiting for ${jobs} jobs to complete: ` +
                    JSON.stringify(c));
      process.exit(1);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const mem1 = await steadyMemory(r);
  if (c.completed !== jobs || c.failed !== 0) {
    console.error(`bullmq_bench: BullMQ counts ${c.completed} completed and ${c.failed} failed of ${jobs} jobs`);
    process.exit(1);
  }

  const lat = [];
  let tEnd = 0;
  for (let i = 0; i < ids.length; i += 5000) {
    const p = r.pipeline();
    for (const id of ids.slice(i, i + 5000)) p.hmget(`bull:${name}:${id}`, 'processedOn', 'finishedOn');
    for (const [err, [po, fo]] of await p.exec()) {
      if (err || !po || !fo) continue;
      lat.push((Number(fo) - Number(po)) * 1000);
      tEnd = Math.max(tEnd, Number(fo));
    }
  }
  if (lat.length !== jobs) {
    console.error(`bullmq_bench: only ${lat.length} of ${jobs} completed jobs have processedOn and finishedOn`);
    process.exit(1);
  }
  lat.sort((a, b) => a - b);
  const secs = (tEnd - t0) / 1000;
  console.error(`bullmq_bench: submitted ${jobs} jobs in ${submitted.toFixed(2)} s; all completed after ${secs.toFixed(2)} s`);
  console.log(`RESULT jobs=${jobs} seconds=${secs.toFixed(3)} rate=${(jobs / secs).toFixed(1)} ` +
              `p50_us=${quantile(lat, 0.5)} p99_us=${quantile(lat, 0.99)} ` +
              `redis_bytes_per_job=${((mem1 - mem0) / jobs).toFixed(1)}`);
  await queue.close();
  r.disconnect();
}

main().catch((e) => { console.error(`bullmq_bench: ${e.stack || e}`); process.exit(1); });
