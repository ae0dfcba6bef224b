const CTRL_RIGHT_BRACKET = 0x1d;

/** Attaches stdin/stdout to the VM's serial console until Ctrl-] (or the VM/daemon ends it). */
// ws is imported on demand: loading it costs every other command start-up time.
export async function attachConsole(url: string, name: string): Promise<void> {
  const { default: WebSocket } = await import('ws');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const stdin = process.stdin;
    const tty = stdin.isTTY;
    const restore = () => {
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onInput);
    };
    const onInput = (data: Buffer) => {
      const at = data.indexOf(CTRL_RIGHT_BRACKET);
      if (at >= 0) {
        if (at > 0) ws.send(data.subarray(0, at));
        ws.close();
        return;
      }
      ws.send(data);
    };
    ws.on('open', () => {
      if (tty) {
        process.stderr.write(`Connected to ${name}'s serial console. Detach with Ctrl-]\r\n`);
        stdin.setRawMode(true);
      }
      stdin.on('data', onInput);
      stdin.resume();
    });
    ws.on('message', (data: Buffer) => process.stdout.write(data));
    ws.on('close', (code, reason) => {
      restore();
      if (code === 4000) reject(new Error(reason.toString()));
      else resolve();
    });
    ws.on('error', (err) => {
      restore();
      reject(err);
    });
  });
}
