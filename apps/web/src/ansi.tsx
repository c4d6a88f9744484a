/**
 * An app's output with its colours rendered: ANSI SGR escapes (`ESC[32m`, bold, 256 and true colours)
 * become styled spans, every other escape sequence (cursor moves, erase-line) is dropped. anser parses;
 * the text is rendered as React text nodes, never as HTML.
 */
import Anser from 'anser';
import type { CSSProperties } from 'react';

const DECORATIONS: Record<string, CSSProperties> = {
  bold: { fontWeight: 'bold' },
  dim: { opacity: 0.7 },
  italic: { fontStyle: 'italic' },
  underline: { textDecoration: 'underline' },
  strikethrough: { textDecoration: 'line-through' },
  hidden: { visibility: 'hidden' },
};

/** The spans of one line; plain text (no escape) stays one string, the common case. */
export function AnsiText({ text }: { text: string }) {
  if (!text.includes('\u001b')) return text;
  const parts = Anser.ansiToJson(text, { remove_empty: true });
  return parts.map((p, i) => {
    const [fg, bg] = p.decorations.includes('reverse') ? [p.bg, p.fg] : [p.fg, p.bg];
    const style: CSSProperties = Object.assign(
      {},
      fg ? { color: `rgb(${fg})` } : null,
      bg ? { backgroundColor: `rgb(${bg})` } : null,
      ...p.decorations.map((d) => DECORATIONS[d] ?? null),
    );
    return Object.keys(style).length === 0 ? (
      // biome-ignore lint/suspicious/noArrayIndexKey: the parts of one line never reorder
      <span key={i}>{p.content}</span>
    ) : (
      // biome-ignore lint/suspicious/noArrayIndexKey: the parts of one line never reorder
      <span key={i} className="ansi" style={style}>
        {p.content}
      </span>
    );
  });
}
