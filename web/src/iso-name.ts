/**
 * Pure: a file's name as the daemon takes it (letters, digits, ".", "_", "+" and "-", starting with a
 * letter or digit, ending in .iso): "Win11 (1).iso" is uploaded as "Win11-1-.iso".
 */
export function isoUploadName(file: string): string {
  const base = file
    .replace(/\.iso$/i, '')
    .replace(/[^A-Za-z0-9._+-]+/g, '-')
    .replace(/\.{2,}/g, '.')
    .slice(0, 190)
    .replace(/^[^A-Za-z0-9]+|\.+$/g, '');
  return `${base || 'installer'}.iso`;
}
