/**
 * QEMU parses option strings like `-chardev socket,id=x,path=P` by splitting on `,` and `=`;
 * a literal comma inside a value is written `,,`. Every value built from user input goes through here.
 */
export class QemuOptError extends Error {}

// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u001f\u007f]/;

export function escapeOptValue(value: string): string {
  if (FORBIDDEN.test(value)) {
    throw new QemuOptError(`value ${JSON.stringify(value)} contains a control character QEMU cannot take`);
  }
  return value.replaceAll(',', ',,');
}

/** Keys are ours, never a user's: refuse anything that is not a plain identifier. */
const KEY_RE = /^[a-z][a-z0-9_.-]*$/;
/** Heads are ours too: a driver (`VGA`, `AC97`) or a count (`-smp 2,...`). */
const HEAD_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export type OptValue = string | number | boolean;

/** `opts('socket', {id: 'x', path: '/a,b'})` → `socket,id=x,path=/a,,b`; booleans become on/off. */
export function opts(head: string | undefined, values: Record<string, OptValue | undefined>): string {
  const parts: string[] = [];
  if (head !== undefined) {
    if (!HEAD_RE.test(head)) throw new QemuOptError(`bad option head ${JSON.stringify(head)}`);
    parts.push(head);
  }
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) continue;
    if (!KEY_RE.test(key)) throw new QemuOptError(`bad option key ${JSON.stringify(key)}`);
    const text = typeof value === 'boolean' ? (value ? 'on' : 'off') : String(value);
    parts.push(`${key}=${escapeOptValue(text)}`);
  }
  return parts.join(',');
}

/**
 * The inverse of `opts`, as QEMU's QemuOpts/keyval parsers read a string: used by tests to prove no
 * value can add a key. Returns the head (a first part without `=`) and the key/value pairs in order.
 */
export function parseOpts(text: string): { head?: string; pairs: [string, string][] } {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === ',') {
      if (text[i + 1] === ',') {
        current += ',';
        i++;
        continue;
      }
      parts.push(current);
      current = '';
      continue;
    }
    current += ch;
  }
  parts.push(current);
  const pairs: [string, string][] = [];
  let head: string | undefined;
  parts.forEach((part, index) => {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (index === 0) head = part;
      else pairs.push([part, '']);
    } else {
      pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
    }
  });
  return head === undefined ? { pairs } : { head, pairs };
}
