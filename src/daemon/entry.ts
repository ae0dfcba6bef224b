// Entry of the daemon bundle (dist/phyllomed.mjs), kept apart so the CLI loads none of the server code.
export { runDaemon } from './main.js';
