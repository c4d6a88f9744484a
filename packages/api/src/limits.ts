/**
 * Limits both ends of the API must agree on. This module imports nothing, so the client (and so a
 * browser bundle) can use it.
 */

/** Most calls one batched HTTP request may carry: the server refuses more (400), the client splits before. */
export const MAX_BATCH_SIZE = 50;
