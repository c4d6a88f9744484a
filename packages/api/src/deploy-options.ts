/** Runtimes a deployment may ask for instead of the detected one (deployments.create `runtime`). */
export const RUNTIMES = ['nodejs', 'python', 'manifest'] as const;
export type Runtime = (typeof RUNTIMES)[number];
