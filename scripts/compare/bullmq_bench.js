// BullMQ under herojobs bench's protocol: N no-op jobs added one call at a time by one
// producer (enqueue/s), then one Worker with concurrency C drains them (drain/s, worker
// start to the last job completed), then R sequential add -> result round trips (p50, p99).
// Prints one JSON line. Usage: node bullmq_bench.js [N] [C] [R] (REDIS_PORT, default 6394)
const { Queue, Worker, QueueEvents } = require('bullmq');
const N = +(process.argv[2] || 20000), C = +(process.argv[3] || 8), R = +(process.argv[4] || 500);
const connection = { host: '127.0.0.1', port: +(process.env.REDIS_PORT || 6394) };
const name = 'cmp' + process.pid;
const pct = (xs, p) => xs[Math.round((xs.length - 1) * p)];
(async () => {
  const q = new Queue(name, { connection });
  let t = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await q.add('noop', { p: 'x'.repeat(16) });
  const enqueue_s = Number(process.hrtime.bigint() - t) / 1e9;
  let done = 0, finish;
  const all = new Promise(r => (finish = r));
  t = process.hrtime.bigint();
  const w = new Worker(name, async () => '', { connection, concurrency: C });
  w.on('completed', () => { if (++done === N) finish(); });
  await all;
  const drain_s = Number(process.hrtime.bigint() - t) / 1e9;
  const ev = new QueueEvents(name, { connection });
  await ev.waitUntilReady();
  const rtts = [];
  for (let i = 0; i < R; i++) {
    const s = process.hrtime.bigint();
    const job = await q.add('noop', { p: 'x'.repeat(16) });
    await job.waitUntilFinished(ev);
    rtts.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  rtts.sort((a, b) => a - b);
  console.log(JSON.stringify({
    system: 'bullmq', version: require('bullmq/package.json').version, n: N, concurrency: C,
    enqueue_per_s: +(N / enqueue_s).toFixed(1), drain_per_s: +(N / drain_s).toFixed(1),
    roundtrip_p50_ms: +pct(rtts, 0.5).toFixed(3), roundtrip_p99_ms: +pct(rtts, 0.99).toFixed(3),
  }));
  await w.close(); await ev.close(); await q.obliterate({ force: true }); await q.close();
  process.exit(0);
})().catch(e => { console.error(e); process.exit(1); });
