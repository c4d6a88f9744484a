/** Account commands: register, login, logout, whoami, passwd. */
import type { Command } from 'commander';
import { type Context, handler } from '../context';
import { CliError, trpcCode, UsageError } from '../errors';
import { printable, shortDate } from '../output';
import { isInteractive, type Prompter, readStdin, stripTrailingNewline, withPrompter } from '../prompt';
import { type User, userJson } from '../views';
import { examples } from './help';

interface CredentialOptions {
  email?: string;
  passwordStdin?: boolean;
}

const NO_TERMINAL =
  'no terminal to prompt on: pass --email <email> --password-stdin and pipe the password on stdin';

async function askUntilAnswered(p: Prompter, question: string, hidden = false): Promise<string> {
  for (;;) {
    const answer = await p.ask(question, { hidden });
    if (hidden ? answer : answer.trim()) return hidden ? answer : answer.trim();
  }
}

async function newPasswordTwice(p: Prompter, label: string): Promise<string> {
  const password = await askUntilAnswered(p, `${label}: `, true);
  const again = await p.ask(`Repeat ${label.toLowerCase()}: `, { hidden: true });
  if (again !== password) throw new CliError('the passwords do not match; nothing was changed');
  return password;
}

/** --password-stdin only makes sense with a pipe; on a terminal the prompt hides what is typed. */
async function passwordLinesFromStdin(): Promise<string> {
  if (isInteractive()) {
    throw new UsageError(
      '--password-stdin reads a pipe, but stdin is a terminal: leave it out to be prompted instead',
    );
  }
  return stripTrailingNewline(await readStdin());
}

async function credentials(
  opts: CredentialOptions,
  confirm: boolean,
): Promise<{ email: string; password: string }> {
  if (opts.passwordStdin) {
    if (!opts.email) throw new UsageError('--password-stdin needs --email <email>');
    const password = await passwordLinesFromStdin();
    if (!password) throw new UsageError('--password-stdin: no password on stdin');
    return { email: opts.email, password };
  }
  if (!isInteractive()) throw new UsageError(NO_TERMINAL);
  return withPrompter(async (p) => {
    const email = opts.email ?? (await askUntilAnswered(p, 'Email: '));
    const password = confirm
      ? await newPasswordTwice(p, 'Password')
      : await askUntilAnswered(p, 'Password: ', true);
    return { email, password };
  });
}

/** Keep the session: the server it belongs to, the account, the token. */
function saveSession(ctx: Context, user: User, token: string) {
  ctx.config.update((c) => ({ ...c, apiUrl: ctx.apiUrl, email: user.email, token }));
  if (ctx.env.CODERUNNER_TOKEN) {
    ctx.out.warn(`CODERUNNER_TOKEN is set and is used instead of the token saved in ${ctx.config.file}`);
  }
}

/** An UNAUTHORIZED answer to these calls is about the password typed, not about a session. */
async function passwordCall<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (trpcCode(err) === 'UNAUTHORIZED')
      throw new CliError((err as Error).message, undefined, { cause: err });
    throw err;
  }
}

function printSession(ctx: Context, verb: string, user: User) {
  if (ctx.json) ctx.out.printJson({ user: userJson(user), apiUrl: ctx.apiUrl });
  else ctx.out.print(`${verb} as ${ctx.out.style(printable(user.email), 'bold')} on ${ctx.apiUrl}`);
}

const credentialOptions = (cmd: Command) =>
  cmd
    .option('--email <email>', 'the account email (prompted for on a terminal)')
    .option('--password-stdin', 'read the password from stdin instead of prompting (for scripts)');

export function registerAuthCommands(program: Command): void {
  const register = program
    .command('register')
    .description('create an account on the server and log in to it');
  credentialOptions(register);
  examples(register, [
    'coderunner register',
    'coderunner --api-url https://coderunner.example.com register',
    'printf %s "$PASSWORD" | coderunner register --email me@example.com --password-stdin',
  ]).action(
    handler<CredentialOptions>(async (ctx, _args, opts) => {
      void ctx.apiUrl; // a bad server address is a usage error before anything is typed
      const input = await credentials(opts, true);
      const { user, token } = await ctx.anonymousClient().auth.register.mutate(input);
      saveSession(ctx, user, token);
      printSession(ctx, 'Registered and logged in', user);
    }),
  );

  const login = program.command('login').description('log in and save the session token');
  credentialOptions(login);
  examples(login, [
    'coderunner login',
    'coderunner login --email me@example.com',
    'printf %s "$PASSWORD" | coderunner login --email me@example.com --password-stdin',
  ]).action(
    handler<CredentialOptions>(async (ctx, _args, opts) => {
      void ctx.apiUrl; // a bad server address is a usage error before anything is typed
      const input = await credentials(opts, false);
      const { user, token } = await passwordCall(ctx.anonymousClient().auth.login.mutate(input));
      saveSession(ctx, user, token);
      printSession(ctx, 'Logged in', user);
    }),
  );

  examples(
    program
      .command('logout')
      .description(
        'forget the saved token (it stays valid on the server until it expires; `coderunner passwd` ends every session)',
      ),
    ['coderunner logout'],
  ).action(
    handler(async (ctx) => {
      const saved = ctx.savedConfig();
      const hadToken = Boolean(saved.token);
      if (hadToken) ctx.config.write({ ...saved, token: undefined, email: undefined });
      if (ctx.json) ctx.out.printJson({ loggedOut: true, hadToken });
      else ctx.out.print(hadToken ? `Logged out (token removed from ${ctx.config.file})` : 'Not logged in');
      if (ctx.env.CODERUNNER_TOKEN) ctx.out.warn('CODERUNNER_TOKEN is still set and still used');
    }),
  );

  examples(program.command('whoami').description('show the account you are logged in as'), [
    'coderunner whoami',
    'coderunner whoami --json',
  ]).action(
    handler(async (ctx) => {
      const user = await ctx.client().auth.me.query();
      if (ctx.json) {
        ctx.out.printJson({ ...userJson(user), apiUrl: ctx.apiUrl });
        return;
      }
      ctx.out.fields([
        ['email', printable(user.email)],
        ['id', user.id],
        ['plan', user.planType],
        ['since', shortDate(user.createdAt)],
        ['server', ctx.apiUrl + (ctx.token?.source === 'env' ? ' (token from CODERUNNER_TOKEN)' : '')],
      ]);
    }),
  );

  examples(
    program
      .command('passwd')
      .description('change your password; every other session ends, this one gets a fresh token')
      .option(
        '--password-stdin',
        'read two lines from stdin instead of prompting: the current password, then the new one',
      ),
    ['coderunner passwd', 'printf "%s\\n%s\\n" "$OLD" "$NEW" | coderunner passwd --password-stdin'],
  ).action(
    handler<{ passwordStdin?: boolean }>(async (ctx, _args, opts) => {
      const client = ctx.client();
      const user = await client.auth.me.query(); // an expired session says so before anything is typed
      let currentPassword: string;
      let newPassword: string;
      if (opts.passwordStdin) {
        const lines = (await passwordLinesFromStdin()).split(/\r?\n/);
        if (lines.length !== 2 || !lines[0] || !lines[1]) {
          throw new UsageError(
            '--password-stdin expects two lines on stdin: the current password, then the new one',
          );
        }
        [currentPassword, newPassword] = [lines[0], lines[1]];
      } else {
        if (!isInteractive()) {
          throw new UsageError(
            'no terminal to prompt on: pipe the current and the new password with --password-stdin',
          );
        }
        [currentPassword, newPassword] = await withPrompter(async (p) => [
          await askUntilAnswered(p, 'Current password: ', true),
          await newPasswordTwice(p, 'New password'),
        ]);
      }
      const { token } = await passwordCall(
        client.auth.changePassword.mutate({ currentPassword, newPassword }),
      );
      saveSession(ctx, user, token);
      if (ctx.json) ctx.out.printJson({ passwordChanged: true, email: user.email });
      else ctx.out.print('Password changed; every other session is logged out');
    }),
  );
}
