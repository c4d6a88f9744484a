/** Choosing a Node.js version from the registry's list (no network: the list is given). */
import { describe, expect, it } from 'vitest';
import { newestLts, pickNodeVersion } from '../src';

const VERSIONS = [
  '18.20.8',
  '20.20.2',
  '21.7.3',
  '22.18.0',
  '22.23.5',
  '23.11.1',
  '24.22.3',
  '25.9.0',
  '26.12.1',
];
const ask = (range: string) => ({ range, source: 'engines.node in package.json' });

describe('pickNodeVersion', () => {
  it('the newest LTS is the newest even major with a newer major beside it', () => {
    expect(newestLts(VERSIONS)).toBe('24.22.3');
    expect(newestLts([...VERSIONS, '27.0.0'])).toBe('26.12.1');
  });

  it('nothing asked: the newest LTS; a range: the newest LTS that fits, else the newest LTS line that fits, else the newest', () => {
    expect(pickNodeVersion(VERSIONS, undefined)).toBe('24.22.3');
    expect(pickNodeVersion(VERSIONS, ask('>=22'))).toBe('24.22.3');
    expect(pickNodeVersion(VERSIONS, ask('22'))).toBe('22.23.5');
    expect(pickNodeVersion(VERSIONS, ask('^22.18.0 || >=24.12.0'))).toBe('24.22.3');
    expect(pickNodeVersion(VERSIONS, ask('>=25'))).toBe('26.12.1');
    expect(pickNodeVersion(VERSIONS, ask('22.18.0'))).toBe('22.18.0');
    expect(pickNodeVersion(VERSIONS, ask('>=99'))).toBeNull();
    expect(() => pickNodeVersion(VERSIONS, ask('twenty'))).toThrow(
      'engines.node in package.json: "twenty" is not a Node.js version or range',
    );
  });
});
