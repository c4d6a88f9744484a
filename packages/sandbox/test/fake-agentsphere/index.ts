export { installFetchRouter } from './fetch-router';
export {
  type FailureRule,
  FakeAgentSphere,
  type FakeSandbox,
  type FakeTemplate,
  type RecordedCall,
} from './server';
