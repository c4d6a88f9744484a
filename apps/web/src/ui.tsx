import { type AnchorHTMLAttributes, type ReactNode, useEffect, useRef, useState } from 'react';
import { errorText } from './api';
import { navigate } from './router';

/** A link inside the dashboard: a real <a href> (keyboard, new tab), navigated without a reload. */
export function Link({ href, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  return (
    <a
      href={href}
      {...rest}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    />
  );
}

/** An error where it happened, announced to screen readers. */
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {errorText(error)}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

/** A deployment status as text (with a colour that only repeats it). */
export function StatusBadge({ status }: { status: string }) {
  return <span className={`status status-${status.toLowerCase()}`}>{status}</span>;
}

/** Marks the deployment its project's URL serves now (the newest RUNNING one). */
export function CurrentBadge() {
  return (
    <span className="status status-current" title="The project URL serves this deployment">
      current
    </span>
  );
}

/** Copies `text`, saying so (or how to copy by hand when the browser refuses) in a live region. */
export function CopyButton({ text, label, what }: { text: string; label: string; what: string }) {
  const [said, setSaid] = useState('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setSaid(`Copied ${what}.`);
    } catch {
      setSaid(`Could not copy: select ${what} and copy it by hand.`);
    }
  };
  return (
    <>
      <button type="button" onClick={copy}>
        {label}
      </button>
      <span role="status" className="muted small">
        {said}
      </span>
    </>
  );
}

/** A button that asks before acting: the first press shows the question, "Confirm" and "Cancel". */
export function ConfirmButton(props: {
  label: string;
  confirmLabel: string;
  question: ReactNode;
  onConfirm: () => void;
  pending?: boolean;
  danger?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  // The confirmation takes focus, so Enter confirms and Tab reaches Cancel.
  useEffect(() => {
    if (open) confirm.current?.focus();
  }, [open]);
  if (!open)
    return (
      <button type="button" className={props.danger ? 'danger' : ''} onClick={() => setOpen(true)}>
        {props.label}
      </button>
    );
  return (
    <fieldset className="confirm">
      <legend>{props.question}</legend>
      <button
        type="button"
        ref={confirm}
        className={props.danger ? 'danger' : ''}
        disabled={props.pending}
        onClick={props.onConfirm}
      >
        {props.pending ? 'Working…' : props.confirmLabel}
      </button>
      <button type="button" onClick={() => setOpen(false)} disabled={props.pending}>
        Cancel
      </button>
    </fieldset>
  );
}

export function formatDate(d: Date): string {
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}
