import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoNameProblem } from '../../src/daemon/isos.js';
import { isoUploadName } from '../../web/src/iso-name.js';

describe('uploaded ISO names', () => {
  it('takes plain file names ending in .iso', () => {
    for (const name of ['debian-12.5.0-amd64-netinst.iso', 'Win11_23H2_English_x64.iso', 'a+b.iso', 'x.iso'])
      expect(isoNameProblem(name), name).toBeUndefined();
  });

  it('refuses what could leave the folder, pass for a temp file, split a QEMU option or not be an ISO', () => {
    for (const name of [
      '../x.iso',
      'a/b.iso',
      '/abs.iso',
      'a..b.iso',
      '.hidden.iso',
      '.x.iso.1234.part',
      'a,b.iso',
      'a b.iso',
      '-opt.iso',
      'noext',
      'file.img',
      '.iso',
      `${'a'.repeat(200)}.iso`,
    ])
      expect(isoNameProblem(name), name).toMatch(/^invalid ISO name .* like debian-12\.iso$/);
  });

  it("takes every name the web UI makes of a browser file's name", () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (file) => {
        expect(isoNameProblem(isoUploadName(file)), file).toBeUndefined();
      }),
    );
    // Cut at the length limit just after a dot: no ".." before the extension.
    expect(isoNameProblem(isoUploadName(`${'a'.repeat(189)}.b.iso`))).toBeUndefined();
  });
});
