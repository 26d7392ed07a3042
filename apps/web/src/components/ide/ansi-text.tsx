import { parseAnsi } from '../../lib/ansi';

/** Text with ANSI colours as spans of text nodes: the parser yields data, React escapes it. Never HTML. */
export function AnsiText({ text }: { text: string }) {
  const { segments } = parseAnsi(text);
  return (
    <>
      {segments.map((s, i) =>
        s.classes.length === 0 ? (
          // biome-ignore lint/suspicious/noArrayIndexKey: segments are positional and immutable
          <span key={i}>{s.text}</span>
        ) : (
          // biome-ignore lint/suspicious/noArrayIndexKey: segments are positional and immutable
          <span key={i} className={s.classes.join(' ')}>
            {s.text}
          </span>
        ),
      )}
    </>
  );
}
