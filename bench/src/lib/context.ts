import type { Scope } from './scope';

export interface BenchContext {
  scope: Scope;
  /** Progress line on stdout, prefixed with the benchmark's name and elapsed time. */
  log(message: string): void;
}

export interface BenchOutput {
  /** `<name>: … — ratio <n>` */
  line: string;
  details: string[];
  database: string;
}
