import { describe, expect, it } from 'vitest';
import { importRequest } from '../../web/src/ImportVm.js';

describe("the browser's import", () => {
  it('keeps the bundle’s name unless given one, and sends no passphrase unless given one', () => {
    expect(importRequest('  ', '')).toEqual({
      url: '/v1/import',
      headers: { 'content-type': 'application/x-phyllome-bundle' },
    });
    expect(importRequest(' web 2 ', '').url).toBe('/v1/import?name=web%202');
  });

  it('sends the passphrase as base64 of its UTF-8 bytes, as the daemon reads it', () => {
    const { headers } = importRequest('', 'grüne Äpfel, 7 Stück');
    expect(Buffer.from(headers['x-phyllome-passphrase']!, 'base64').toString('utf8')).toBe(
      'grüne Äpfel, 7 Stück',
    );
  });
});
