// 500 VMs defined: `phyllome list --json` latency and the daemon's resident memory.
// Targets: list median <= 150 ms, daemon RSS <= 80 MB. Usage: node bench/scale.ts [vms] [rounds]
import { execFile } from 'node:child_process';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cli, median, ms, prepare } from './lib.ts';

const count = Number(process.argv[2] ?? 500);
const rounds = Number(process.argv[3] ?? 15);
const { guest, env, cleanup } = prepare();

function post(socketPath: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method: 'POST', path: '/v1/vms', headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

try {
  await cli(env, ['list']);
  const socket = path.join(env.PHYLLOME_RUNTIME_DIR!, 'phyllomed.sock');
  for (let i = 0; i < count; i += 25) {
    await Promise.all(
      Array.from({ length: Math.min(25, count - i) }, (_, j) =>
        post(socket, {
          name: `vm-${i + j}`,
          memory: '256M',
          boot: { kernel: `${guest}/vmlinuz`, initrd: `${guest}/initrd.img` },
        }),
      ),
    );
  }
  const times: number[] = [];
  let listed = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    listed = (JSON.parse(await cli(env, ['list', '--json'])) as unknown[]).length;
    times.push(performance.now() - t0);
  }
  const baseline: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) =>
      execFile(process.execPath, ['-e', ''], (e) => (e ? reject(e) : resolve())),
    );
    baseline.push(performance.now() - t0);
  }
  const rss = () => {
    const pid = Number(readFileSync(path.join(env.PHYLLOME_RUNTIME_DIR!, 'phyllomed.pid'), 'utf8'));
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  };
  const afterCreate = rss();
  // As after a reboot or an upgrade: a fresh daemon that loads the 500 VMs from disk.
  const pid = Number(readFileSync(path.join(env.PHYLLOME_RUNTIME_DIR!, 'phyllomed.pid'), 'utf8'));
  process.kill(pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  for (let r = 0; r < 5; r++) await cli(env, ['list', '--json']);
  const afterLoad = rss();
  console.log(`${listed} VMs defined`);
  console.log(
    `phyllome list --json: median ${ms(median(times))} (target 150 ms, ratio ${(median(times) / 150).toFixed(2)}); bare node start-up ${ms(median(baseline))}`,
  );
  console.log(
    `phyllomed resident memory: ${afterLoad.toFixed(1)} MB freshly loaded, ${afterCreate.toFixed(1)} MB right after creating them (target 80 MB, ratio ${(afterLoad / 80).toFixed(2)})`,
  );
} finally {
  cleanup();
}
