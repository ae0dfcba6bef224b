/**
 * Runs a long request while showing its progress events (from /v1/events) as a bar on a terminal.
 * Without a terminal (scripts, --json) the request runs silently.
 */
export async function withProgress<T>(
  eventsUrl: string,
  /** An empty vm matches any (an import learns its name from the bundle). */
  match: { vm: string; op: string },
  label: string,
  run: () => Promise<T>,
): Promise<T> {
  if (!process.stderr.isTTY) return run();
  const [{ default: WebSocket }, { progress }] = await Promise.all([import('ws'), import('@clack/prompts')]);
  const bar = progress({ max: 100, output: process.stderr });
  bar.start(label);
  let shown = 0;
  const ws = new WebSocket(eventsUrl);
  ws.on('error', () => undefined);
  ws.on('message', (data: Buffer) => {
    const e = JSON.parse(data.toString()) as { type: string; vm: string; op?: string; percent?: number };
    if (e.type !== 'progress' || (match.vm && e.vm !== match.vm) || e.op !== match.op) return;
    if (e.percent === undefined) return;
    const step = Math.floor(e.percent) - shown;
    if (step > 0) {
      bar.advance(step, `${label} ${Math.floor(e.percent)}%`);
      shown += step;
    }
  });
  await new Promise((resolve) => ws.once('open', resolve).once('error', resolve));
  try {
    const result = await run();
    bar.stop(`${label} done`);
    return result;
  } catch (e) {
    bar.error(`${label} failed`);
    throw e;
  } finally {
    ws.close();
  }
}
