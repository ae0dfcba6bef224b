import { describe, expect, it } from 'vitest';
import { formatSize, parseSize, SizeError } from '../../src/spec/size.js';

describe('sizes', () => {
  it.each([
    ['512M', 512 * 2 ** 20],
    ['4G', 4 * 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['2048', 2048 * 2 ** 20],
    ['64k', 64 * 1024],
    ['1GiB', 2 ** 30],
  ])('parses %s', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['0', 'abc', '-1G', '4X', '', '1e9', '0M'])('refuses %j with a hint', (text) => {
    expect(() => parseSize(text)).toThrow(SizeError);
    expect(() => parseSize(text)).toThrow(/512M/);
  });

  it('formats to the largest whole unit', () => {
    expect(formatSize(512 * 2 ** 20)).toBe('512M');
    expect(formatSize(4 * 2 ** 30)).toBe('4G');
    expect(formatSize(1536 * 2 ** 20)).toBe('1536M');
    expect(formatSize(1000)).toBe('1000B');
  });
});
