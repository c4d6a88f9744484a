// One free-port helper for the workspace: the leaf package's (an app's port, a test's cluster port).
export { findFreePort } from '@coderunner/embedded-postgres';
