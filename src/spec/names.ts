/** VM names become folder names, socket paths and QEMU's -name: keep them to a safe alphabet. */
export const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function vmNameProblem(name: string): string | undefined {
  if (VM_NAME_RE.test(name)) return undefined;
  return (
    `invalid VM name ${JSON.stringify(name)}: use 1 to 63 characters of lowercase letters, digits and "-", ` +
    'starting with a letter or digit (for example "web-1")'
  );
}

/** Private network names become bridge names (`ph-NAME`), which Linux limits to 15 bytes. */
export const NETWORK_NAME_RE = /^[a-z0-9][a-z0-9-]{0,11}$/;
export const NETWORK_NAME_RULE =
  'must be 1 to 12 lowercase letters, digits and "-", starting with a letter or digit (like "lab")';
