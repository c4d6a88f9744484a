import { startTestCluster } from './testing';

export default async function setup(): Promise<() => Promise<void>> {
  return startTestCluster();
}
