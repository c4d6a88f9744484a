import { describe, expect, it } from 'vitest';
import { CommandTimeoutError, SandboxError, SandboxNotFoundError } from '../src/types';

describe('sandbox errors', () => {
  it('say what happened in words a user can act on', () => {
    const gone = new SandboxNotFoundError('sbx-1');
    expect(gone).toBeInstanceOf(SandboxError);
    expect(gone.message).toBe('sandbox sbx-1 no longer exists');
    const slow = new CommandTimeoutError('npm ci', 300_000);
    expect(slow.message).toBe('command timed out after 300 s: npm ci');
  });
});
