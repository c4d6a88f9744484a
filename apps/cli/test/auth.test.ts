import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closedPort,
  freshConfigDir,
  PASSWORD,
  readConfig,
  registerViaCli,
  removeTempDirs,
  runCli,
  startTestServer,
  type TestServer,
  uniqueEmail,
  writeConfig,
} from './helpers';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('register', () => {
  it('creates the account, logs in, and saves apiUrl, email and token in a 0600 file in a 0700 folder', async () => {
    const configDir = freshConfigDir();
    const email = uniqueEmail('Reg');
    const r = await runCli(['register', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\n`,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`Registered and logged in as ${email.toLowerCase()} on ${server.url}\n`);

    expect(fs.statSync(configDir).mode & 0o777).toBe(0o700);
    const file = path.join(configDir, 'config.json');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const saved = readConfig(configDir);
    expect(Object.keys(saved).sort()).toEqual(['apiUrl', 'email', 'token']);
    expect(saved.apiUrl).toBe(server.url);
    expect(saved.email).toBe(email.toLowerCase());
    expect(saved.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // no temporary files left behind by the atomic write
    expect(fs.readdirSync(configDir)).toEqual(['config.json']);

    // the saved session works without any environment
    const who = await runCli(['whoami', '--json'], { configDir, apiUrl: null });
    expect(who.code).toBe(0);
    expect(who.json().email).toBe(email.toLowerCase());
  });

  it('--json prints the user and the server, never the token', async () => {
    const configDir = freshConfigDir();
    const email = uniqueEmail();
    const r = await runCli(['register', '--email', email, '--password-stdin', '--json'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD, // no trailing newline is fine too
    });
    expect(r.code).toBe(0);
    const out = r.json();
    expect(out).toEqual({
      user: {
        id: expect.stringMatching(UUID),
        email,
        planType: 'free',
        createdAt: expect.stringMatching(ISO),
        updatedAt: expect.stringMatching(ISO),
      },
      apiUrl: server.url,
    });
    expect(r.stdout).not.toContain(readConfig(configDir).token);
    // the password on stdin was exactly PASSWORD: login with it works
    const login = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\r\n`,
    });
    expect(login.code).toBe(0);
  });

  it('a taken email and a short password fail with the server message (exit 1), nothing saved', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, freshConfigDir());
    const taken = await runCli(['register', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD,
    });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^error: .*(already|taken|registered).*\n$/);
    expect(taken.stdout).toBe('');

    const short = await runCli(['register', '--email', uniqueEmail(), '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: 'short\n',
    });
    expect(short.code).toBe(1);
    expect(short.stderr).toBe('error: password: must be at least 8 characters\n');
    expect(fs.existsSync(configDir)).toBe(false);
  });

  it('without a terminal it needs --email and --password-stdin (usage error, exit 2)', async () => {
    const configDir = freshConfigDir();
    const noFlags = await runCli(['register'], { configDir, apiUrl: server.url });
    expect(noFlags.code).toBe(2);
    expect(noFlags.stderr).toMatch(/^error: no terminal to prompt on: pass --email <email> --password-stdin/);

    const noEmail = await runCli(['login', '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD,
    });
    expect(noEmail.code).toBe(2);
    expect(noEmail.stderr).toBe('error: --password-stdin needs --email <email>\n');

    const empty = await runCli(['login', '--email', 'a@example.com', '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: '\n',
    });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toBe('error: --password-stdin: no password on stdin\n');
  });
});

describe('login', () => {
  it('saves a fresh token; --json prints the user', async () => {
    const email = await registerViaCli(server, freshConfigDir());
    const configDir = freshConfigDir();
    const r = await runCli(['login', '--email', email, '--password-stdin', '--json'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\n`,
    });
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ user: { email }, apiUrl: server.url });
    expect(readConfig(configDir)).toMatchObject({ apiUrl: server.url, email });
    expect(fs.statSync(path.join(configDir, 'config.json')).mode & 0o777).toBe(0o600);

    const human = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\n`,
    });
    expect(human.stdout).toBe(`Logged in as ${email} on ${server.url}\n`);
  });

  it('a wrong password is exit 1 "invalid email or password" (not a session problem); config untouched', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, configDir);
    const before = fs.readFileSync(path.join(configDir, 'config.json'), 'utf8');
    const r = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: 'not the password\n',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: invalid email or password\n');
    expect(r.stdout).toBe('');
    expect(fs.readFileSync(path.join(configDir, 'config.json'), 'utf8')).toBe(before);

    const unknown = await runCli(['login', '--email', uniqueEmail('nobody'), '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD,
    });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('error: invalid email or password\n');
  });

  it('replacing a config file keeps it 0600 even when it was wider before', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, freshConfigDir());
    writeConfig(configDir, { apiUrl: 'http://old.example' });
    fs.chmodSync(path.join(configDir, 'config.json'), 0o644);
    const r = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: PASSWORD,
    });
    expect(r.code).toBe(0);
    expect(fs.statSync(path.join(configDir, 'config.json')).mode & 0o777).toBe(0o600);
    expect(readConfig(configDir).apiUrl).toBe(server.url);
  });
});

describe('whoami', () => {
  it('human output lists the account; --json is one document with stable fields', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, configDir);
    const human = await runCli(['whoami'], { configDir, apiUrl: server.url });
    expect(human.code).toBe(0);
    expect(human.stderr).toBe('');
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`email   ${email}`);
    expect(lines[1]).toMatch(/^id {6}[0-9a-f-]{36}$/);
    expect(lines[2]).toBe('plan    free');
    expect(lines[3]).toMatch(/^since {3}\d{4}-\d\d-\d\d \d\d:\d\d$/);
    expect(lines[4]).toBe(`server  ${server.url}`);
    expect(human.stdout).not.toContain('\u001b['); // not a terminal: no colours

    const json = await runCli(['whoami', '--json'], { configDir, apiUrl: server.url });
    expect(json.code).toBe(0);
    const out = json.json();
    expect(Object.keys(out)).toEqual(['id', 'email', 'planType', 'createdAt', 'updatedAt', 'apiUrl']);
    expect(out).toMatchObject({ email, planType: 'free', apiUrl: server.url });
    expect(out.createdAt).toMatch(ISO);
  });

  it('with no saved token: exit 3 "not logged in: run coderunner login", without asking the server', async () => {
    const port = await closedPort();
    const r = await runCli(['whoami'], { configDir: freshConfigDir(), apiUrl: `http://127.0.0.1:${port}` });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('error: not logged in: run coderunner login\n');
    expect(r.stdout).toBe('');
  });

  it('a garbage or expired token: exit 3 "your session has expired: run coderunner login"', async () => {
    const configDir = freshConfigDir();
    writeConfig(configDir, { apiUrl: server.url, email: 'x@example.com', token: 'garbage.not.atoken' });
    for (const args of [['whoami'], ['whoami', '--json'], ['projects', 'list'], ['passwd']]) {
      const r = await runCli(args, { configDir, apiUrl: null });
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr).toBe('error: your session has expired: run coderunner login\n');
      expect(r.stdout).toBe('');
    }
  });
});

describe('server address and token precedence', () => {
  it('CODERUNNER_API_URL beats the config; --api-url beats CODERUNNER_API_URL', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir); // saves apiUrl = server.url
    const dead = `http://127.0.0.1:${await closedPort()}`;

    const fromConfig = await runCli(['whoami', '--json'], { configDir, apiUrl: null });
    expect(fromConfig.code).toBe(0);
    expect(fromConfig.json().apiUrl).toBe(server.url);

    const envWins = await runCli(['whoami'], { configDir, apiUrl: dead });
    expect(envWins.code).toBe(4);
    expect(envWins.stderr).toMatch(new RegExp(`^error: cannot reach ${dead} — is the server running\\?`));

    const flagWins = await runCli(['--api-url', server.url, 'whoami', '--json'], { configDir, apiUrl: dead });
    expect(flagWins.code).toBe(0);
    expect(flagWins.json().apiUrl).toBe(server.url);

    const flagAfter = await runCli(['whoami', '--api-url', dead], { configDir, apiUrl: server.url });
    expect(flagAfter.code).toBe(4);

    // a trailing slash is fine
    const slash = await runCli(['whoami', '--api-url', `${server.url}/`], { configDir, apiUrl: null });
    expect(slash.code).toBe(0);
  });

  it('the config server is used when nothing else is given', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const dead = `http://127.0.0.1:${await closedPort()}`;
    writeConfig(configDir, { ...readConfig(configDir), apiUrl: dead });
    const r = await runCli(['whoami'], { configDir, apiUrl: null });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`cannot reach ${dead}`);
  });

  it('CODERUNNER_TOKEN beats the saved token', async () => {
    const aDir = freshConfigDir();
    const bDir = freshConfigDir();
    const a = await registerViaCli(server, aDir, uniqueEmail('a'));
    const b = await registerViaCli(server, bDir, uniqueEmail('b'));
    const bToken = readConfig(bDir).token!;

    const r = await runCli(['whoami', '--json'], { configDir: aDir, apiUrl: server.url });
    expect(r.json().email).toBe(a);
    const env = await runCli(['whoami', '--json'], {
      configDir: aDir,
      apiUrl: server.url,
      env: { CODERUNNER_TOKEN: bToken },
    });
    expect(env.code).toBe(0);
    expect(env.json().email).toBe(b);

    // CI: no config at all, only the environment
    const ci = await runCli(['whoami'], {
      configDir: freshConfigDir(),
      apiUrl: server.url,
      env: { CODERUNNER_TOKEN: bToken },
    });
    expect(ci.code).toBe(0);
    expect(ci.stdout).toContain('(token from CODERUNNER_TOKEN)');

    const bad = await runCli(['whoami'], {
      configDir: aDir,
      apiUrl: server.url,
      env: { CODERUNNER_TOKEN: 'nonsense' },
    });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(
      /^error: the token in CODERUNNER_TOKEN is invalid or expired: .*coderunner login\n$/,
    );
  });

  it('XDG_CONFIG_HOME locates the config when CODERUNNER_CONFIG_DIR is unset', async () => {
    const xdgDir = path.dirname(freshConfigDir());
    const email = uniqueEmail();
    const r = await runCli(['register', '--email', email, '--password-stdin'], {
      configDir: '',
      apiUrl: server.url,
      input: PASSWORD,
      env: { CODERUNNER_CONFIG_DIR: undefined, XDG_CONFIG_HOME: xdgDir },
    });
    expect(r.code).toBe(0);
    expect(readConfig(path.join(xdgDir, 'coderunner')).email).toBe(email);
  });

  it('a server that is down: exit 4 and "cannot reach <url> — is the server running?"', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const dead = `http://127.0.0.1:${await closedPort()}`;
    for (const args of [
      ['whoami'],
      ['projects', 'list', '--json'],
      ['login', '--email', 'a@example.com', '--password-stdin'],
    ]) {
      const r = await runCli(['--api-url', dead, ...args], { configDir, apiUrl: null, input: PASSWORD });
      expect(r.code, args.join(' ')).toBe(4);
      expect(r.stderr).toMatch(
        new RegExp(`^error: cannot reach ${dead} — is the server running\\? \\(.*\\)\n$`),
      );
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stdout).toBe('');
    }
    const debug = await runCli(['--api-url', dead, 'whoami', '--debug'], { configDir, apiUrl: null });
    expect(debug.code).toBe(4);
    expect(debug.stderr).toMatch(/\n\s+at /);
    expect(debug.stderr).toContain('caused by: TRPCClientError');
  });

  it('a malformed server address is a usage error (exit 2)', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const r = await runCli(['whoami', '--api-url', 'ftp://example.com'], { configDir, apiUrl: null });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --api-url must be an http:// or https:// URL: ftp://example.com\n');
    const env = await runCli(['whoami'], { configDir, apiUrl: 'not a url' });
    expect(env.code).toBe(2);
    expect(env.stderr).toBe('error: CODERUNNER_API_URL is not a URL: not a url\n');
  });
});

describe('logout', () => {
  it('forgets the token and the email, keeps the server; whoami then says not logged in', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const r = await runCli(['logout'], { configDir, apiUrl: server.url });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`Logged out (token removed from ${path.join(configDir, 'config.json')})\n`);
    expect(readConfig(configDir)).toEqual({ apiUrl: server.url });
    expect(fs.statSync(path.join(configDir, 'config.json')).mode & 0o777).toBe(0o600);

    const who = await runCli(['whoami'], { configDir, apiUrl: null });
    expect(who.code).toBe(3);
    expect(who.stderr).toBe('error: not logged in: run coderunner login\n');

    const again = await runCli(['logout', '--json'], { configDir, apiUrl: null });
    expect(again.code).toBe(0);
    expect(again.json()).toEqual({ loggedOut: true, hadToken: false });
  });

  it('--json reports that a token was removed; with no config at all it creates none', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const r = await runCli(['logout', '--json'], { configDir, apiUrl: null });
    expect(r.json()).toEqual({ loggedOut: true, hadToken: true });

    const none = freshConfigDir();
    const n = await runCli(['logout'], { configDir: none, apiUrl: null });
    expect(n.code).toBe(0);
    expect(n.stdout).toBe('Not logged in\n');
    expect(fs.existsSync(none)).toBe(false);
  });
});

describe('passwd', () => {
  it('changes the password with --password-stdin (two lines), saves the fresh token, ends old sessions', async () => {
    const configDir = freshConfigDir();
    const email = await registerViaCli(server, configDir);
    const oldToken = readConfig(configDir).token!;
    const NEW = 'a brand new passphrase';

    const r = await runCli(['passwd', '--password-stdin', '--json'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\n${NEW}\n`,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.json()).toEqual({ passwordChanged: true, email });
    const saved = readConfig(configDir);
    expect(saved.token).not.toBe(oldToken);
    expect(fs.statSync(path.join(configDir, 'config.json')).mode & 0o777).toBe(0o600);

    // this session continues, the old token is dead
    expect((await runCli(['whoami'], { configDir, apiUrl: null })).code).toBe(0);
    const old = await runCli(['whoami'], {
      configDir,
      apiUrl: null,
      env: { CODERUNNER_TOKEN: oldToken },
    });
    expect(old.code).toBe(3);

    // the new password logs in, the old one does not
    const loginNew = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir: freshConfigDir(),
      apiUrl: server.url,
      input: NEW,
    });
    expect(loginNew.code).toBe(0);
    const loginOld = await runCli(['login', '--email', email, '--password-stdin'], {
      configDir: freshConfigDir(),
      apiUrl: server.url,
      input: PASSWORD,
    });
    expect(loginOld.code).toBe(1);

    // human output
    const back = await runCli(['passwd', '--password-stdin'], {
      configDir,
      apiUrl: null,
      input: `${NEW}\n${PASSWORD}`,
    });
    expect(back.code).toBe(0);
    expect(back.stdout).toBe('Password changed; every other session is logged out\n');
  });

  it('a wrong current password is exit 1 with the server message; the session stays valid', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const before = readConfig(configDir);
    const r = await runCli(['passwd', '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: 'wrong current\nsomething new and long\n',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error: current password is wrong\n');
    expect(readConfig(configDir)).toEqual(before);
    expect((await runCli(['whoami'], { configDir, apiUrl: null })).code).toBe(0);
  });

  it('--password-stdin needs exactly two lines; without a terminal it needs --password-stdin (exit 2)', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const one = await runCli(['passwd', '--password-stdin'], {
      configDir,
      apiUrl: server.url,
      input: `${PASSWORD}\n`,
    });
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/^error: --password-stdin expects two lines/);
    const none = await runCli(['passwd'], { configDir, apiUrl: server.url });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^error: no terminal to prompt on/);
  });

  it('not logged in: exit 3 before reading anything', async () => {
    const r = await runCli(['passwd', '--password-stdin'], {
      configDir: freshConfigDir(),
      apiUrl: server.url,
      input: 'a\nb\n',
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('error: not logged in: run coderunner login\n');
  });
});
