import { buildForTests } from '../integration/global-setup.js';

/** The same build and test guest as the integration tests; the tests find the guest in the environment. */
export default function setup(): void {
  process.env.PHYLLOME_TEST_GUEST = buildForTests();
}
