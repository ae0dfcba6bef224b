/** Errors the API turns into 4xx answers; their message tells the user what to do. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 404 | 409 | 423 = 400,
    readonly code = 'bad-request',
  ) {
    super(message);
  }
}

/**
 * A `.catch()` handler (or catch-block call): errors of these kinds carry a message meant for the
 * user and become a 400; any other error passes on unchanged.
 */
export const userErrorsFrom =
  (...kinds: (new (...args: never[]) => Error)[]) =>
  (e: unknown): never => {
    if (kinds.some((k) => e instanceof k)) throw new UserError((e as Error).message);
    throw e;
  };

export const notFound = (name: string) =>
  new UserError(`no VM named "${name}": see "phyllome list" for the VMs there are`, 404, 'not-found');

export const conflict = (message: string) => new UserError(message, 409, 'conflict');
