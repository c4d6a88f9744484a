import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useId, useState } from 'react';
import { fieldError, useTRPC } from '../api';
import { ErrorMessage } from '../ui';

export function AuthPage() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const id = useId();
  // Logging in sets the session cookie; the next auth.me then answers with the user.
  const onSuccess = () => queryClient.invalidateQueries({ queryKey: trpc.auth.me.queryKey() });
  const login = useMutation(trpc.auth.login.mutationOptions({ onSuccess }));
  const register = useMutation(trpc.auth.register.mutationOptions({ onSuccess }));
  const action = mode === 'login' ? login : register;

  const submit = (e: FormEvent) => {
    e.preventDefault();
    action.mutate({ email, password });
  };
  const emailError = fieldError(action.error, 'email');
  const passwordError = fieldError(action.error, 'password');

  return (
    <section className="narrow">
      <h1>{mode === 'login' ? 'Sign in' : 'Create an account'}</h1>
      <form onSubmit={submit} noValidate>
        <label htmlFor={`${id}-email`}>Email</label>
        <input
          id={`${id}-email`}
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          aria-invalid={emailError ? true : undefined}
          aria-describedby={emailError ? `${id}-email-error` : undefined}
        />
        {emailError && (
          <p className="field-error" id={`${id}-email-error`}>
            {emailError}
          </p>
        )}
        <label htmlFor={`${id}-password`}>Password</label>
        <input
          id={`${id}-password`}
          type="password"
          autoComplete={mode === 'login' ? 'current-password' : 'new-password'}
          required
          minLength={mode === 'register' ? 8 : undefined}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          aria-invalid={passwordError ? true : undefined}
          aria-describedby={passwordError ? `${id}-password-error` : undefined}
        />
        {mode === 'register' && !passwordError && <p className="hint">At least 8 characters.</p>}
        {passwordError && (
          <p className="field-error" id={`${id}-password-error`}>
            {passwordError}
          </p>
        )}
        {!emailError && !passwordError && <ErrorMessage error={action.error} />}
        <button type="submit" className="primary" disabled={action.isPending}>
          {action.isPending ? 'Please wait…' : mode === 'login' ? 'Sign in' : 'Sign up'}
        </button>
      </form>
      <p>
        {mode === 'login' ? 'No account yet? ' : 'Already have an account? '}
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(mode === 'login' ? 'register' : 'login');
            login.reset();
            register.reset();
          }}
        >
          {mode === 'login' ? 'Create an account' : 'Sign in instead'}
        </button>
      </p>
    </section>
  );
}
