/**
 * The CLI as a person uses it: on a pseudo-terminal (util-linux `script`), typing at the prompts.
 * What the terminal shows is checked: the email is echoed, a password never is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freshConfigDir,
  PASSWORD,
  readConfig,
  registerViaCli,
  removeTempDirs,
  runCli,
  runInPty,
  startTestServer,
  type TestServer,
  uniqueEmail,
} from './helpers';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
  removeTempDirs();
});

// `script -qfec` is util-linux's (Debian: bsdutils, Essential). macOS's BSD script takes other flags.
describe.skipIf(process.platform !== 'linux')('on a terminal', () => {
  it('login prompts for the email (echoed) and the password (not echoed) and saves the token', async () => {
    const email = await registerViaCli(server, freshConfigDir());
    const configDir = freshConfigDir();
    const pty = runInPty(['login'], { configDir, apiUrl: server.url });
    await pty.waitFor('Email: ');
    pty.type(`${email}\r`);
    await pty.waitFor('Password: ');
    pty.type(`${PASSWORD}\r`);
    expect(await pty.exit).toBe(0);

    expect(pty.output).toContain(`Email: ${email}`);
    expect(pty.output).not.toContain(PASSWORD);
    expect(pty.output).not.toContain(PASSWORD.slice(0, 5)); // not even partly
    expect(pty.output).toMatch(/Logged in as .*on http/);
    // stdout is a terminal: the email is in bold
    expect(pty.output).toContain(`\u001b[1m${email}\u001b[22m`);
    const saved = readConfig(configDir);
    expect(saved.email).toBe(email);
    expect(saved.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect((await runCli(['whoami'], { configDir, apiUrl: null })).code).toBe(0);
  });

  it('a password typed ahead with the email (one paste) is still not echoed', async () => {
    const email = await registerViaCli(server, freshConfigDir());
    const configDir = freshConfigDir();
    const pty = runInPty(['login'], { configDir, apiUrl: server.url, env: { NO_COLOR: '1' } });
    await pty.waitFor('Email: ');
    pty.type(`${email}\r${PASSWORD}\r`);
    expect(await pty.exit).toBe(0);
    expect(pty.output).not.toContain(PASSWORD);
    expect(pty.output).toContain(`Logged in as ${email} on`); // NO_COLOR: no escapes
    expect(readConfig(configDir).email).toBe(email);
  });

  it('backspace edits the hidden password; a wrong password is exit 1', async () => {
    const email = await registerViaCli(server, freshConfigDir());
    const configDir = freshConfigDir();
    const pty = runInPty(['login', '--email', email], { configDir, apiUrl: server.url });
    await pty.waitFor('Password: ');
    pty.type(`${PASSWORD}xy\u007f\u007f\r`); // typo, then two backspaces
    expect(await pty.exit).toBe(0);
    expect(pty.output).not.toContain(PASSWORD);

    const wrong = runInPty(['login', '--email', email], { configDir: freshConfigDir(), apiUrl: server.url });
    await wrong.waitFor('Password: ');
    wrong.type('not the password\r');
    expect(await wrong.exit).toBe(1);
    expect(wrong.output).toContain('error: invalid email or password');
  });

  it('register asks for the password twice and refuses a mismatch', async () => {
    const configDir = freshConfigDir();
    const email = uniqueEmail('tty');
    const bad = runInPty(['register'], { configDir, apiUrl: server.url });
    await bad.waitFor('Email: ');
    bad.type(`${email}\r`);
    await bad.waitFor('Password: ');
    bad.type(`${PASSWORD}\r`);
    await bad.waitFor('Repeat password: ');
    bad.type('something else\r');
    expect(await bad.exit).toBe(1);
    expect(bad.output).toContain('error: the passwords do not match');

    const good = runInPty(['register', '--json'], { configDir, apiUrl: server.url });
    await good.waitFor('Email: ');
    good.type(`${email}\r`);
    await good.waitFor('Password: ');
    good.type(`${PASSWORD}\r`);
    await good.waitFor('Repeat password: ');
    good.type(`${PASSWORD}\r`);
    expect(await good.exit).toBe(0);
    expect(good.output).not.toContain(PASSWORD);
    expect(good.output).toContain(`"email": "${email}"`);
    expect(readConfig(configDir).email).toBe(email);
  });

  it('passwd prompts for the current and the new password (twice), none echoed', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    const NEW = 'the new passphrase here';
    const pty = runInPty(['passwd'], { configDir, apiUrl: null });
    await pty.waitFor('Current password: ');
    pty.type(`${PASSWORD}\r`);
    await pty.waitFor('New password: ');
    pty.type(`${NEW}\r`);
    await pty.waitFor('Repeat new password: ');
    pty.type(`${NEW}\r`);
    expect(await pty.exit).toBe(0);
    expect(pty.output).not.toContain(PASSWORD);
    expect(pty.output).not.toContain(NEW);
    expect(pty.output).toContain('Password changed');
    expect((await runCli(['whoami'], { configDir, apiUrl: null })).code).toBe(0);
  });

  it('projects delete asks y/N: anything but y keeps the project, y deletes it', async () => {
    const configDir = freshConfigDir();
    await registerViaCli(server, configDir);
    expect((await runCli(['projects', 'create', 'doomed'], { configDir, apiUrl: null })).code).toBe(0);

    const no = runInPty(['projects', 'delete', 'doomed'], { configDir, apiUrl: null });
    await no.waitFor('[y/N] ');
    no.type('\r');
    expect(await no.exit).toBe(1);
    expect(no.output).toContain('error: not deleted');
    expect((await runCli(['projects', 'show', 'doomed'], { configDir, apiUrl: null })).code).toBe(0);

    const yes = runInPty(['projects', 'delete', 'doomed'], { configDir, apiUrl: null });
    await yes.waitFor(/Delete project doomed \([0-9a-f-]{36}\) and everything in it\? \[y\/N\] /);
    yes.type('y\r');
    expect(await yes.exit).toBe(0);
    expect(yes.output).toContain('Deleted project doomed');
    expect((await runCli(['projects', 'show', 'doomed'], { configDir, apiUrl: null })).code).toBe(1);
  });

  it('Ctrl-C at a prompt exits 130 and leaves everything as it was', async () => {
    const configDir = freshConfigDir();
    const pty = runInPty(['login'], { configDir, apiUrl: server.url });
    await pty.waitFor('Email: ');
    pty.type('someone@example.com\r');
    await pty.waitFor('Password: ');
    pty.type('abc\u0003');
    expect(await pty.exit).toBe(130);
    expect(pty.output).not.toContain('abc');
    expect(pty.output).not.toContain('error:');
  });

  it('--password-stdin on a terminal is refused (it would read the password from the keyboard)', async () => {
    const pty = runInPty(['login', '--email', 'a@example.com', '--password-stdin'], {
      configDir: freshConfigDir(),
      apiUrl: server.url,
    });
    expect(await pty.exit).toBe(2);
    expect(pty.output).toContain('error: --password-stdin reads a pipe, but stdin is a terminal');
  });
});
