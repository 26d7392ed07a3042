'use client';
import '@fontsource/jetbrains-mono/400.css';
import '@xterm/xterm/css/xterm.css';
import '../../styles/replay.css';
import { Terminal } from '@xterm/xterm';
import { useCallback, useEffect, useRef, useState } from 'react';
import { type Cast, formatClock, indexAfter, parseSize } from '../../lib/recording';

/** Playback speeds offered. */
const SPEEDS = [1, 2, 4] as const;

// The replay's colours: the IDE's dark palette (its terminal's background and text).
const THEME = { background: '#101216', foreground: '#d7dae0', cursor: '#6aa9ff' };

/** A request to jump to a time (a timeline click); `n` makes a repeated click on the same time count. */
export interface SeekRequest {
  t: number;
  n: number;
}

/**
 * Plays an asciicast v2 recording in a read-only xterm.js (no input reaches anything: there is no socket) with
 * its own timing: play/pause, 1×/2×/4×, and a seek slider. Seeking resets the screen and writes everything up to
 * that time at once; resizes are applied in order with the output (after what came before them is drawn).
 */
export function CastPlayer({ cast, label, seek }: { cast: Cast; label: string; seek: SeekRequest | null }) {
  const host = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  /** Next entry to draw, and the playback position (s). */
  const index = useRef(0);
  const position = useRef(0);
  const [shown, setShown] = useState(0);
  const [playing, setPlaying] = useState(false);
  const [speed, setSpeed] = useState<(typeof SPEEDS)[number]>(1);

  // Draws entries [from, to) of the cast: output batched into one write, each resize after what precedes it.
  const draw = useCallback(
    (from: number, to: number) => {
      const t = term.current;
      if (!t) return;
      let batch = '';
      for (let i = from; i < to; i++) {
        const e = cast.events[i];
        if (!e) continue;
        if (e.kind === 'o') {
          batch += e.data;
          continue;
        }
        const size = parseSize(e.data);
        if (!size) continue;
        if (batch) t.write(batch);
        batch = '';
        t.write('', () => t.resize(size.cols, size.rows));
      }
      if (batch) t.write(batch);
    },
    [cast],
  );

  const seekTo = useCallback(
    (seconds: number) => {
      const t = term.current;
      if (!t) return;
      const target = Math.min(Math.max(seconds, 0), cast.duration);
      t.reset();
      t.resize(cast.width, cast.height);
      const to = indexAfter(cast, target);
      draw(0, to);
      index.current = to;
      position.current = target;
      setShown(target);
    },
    [cast, draw],
  );

  // The screen: one per cast.
  useEffect(() => {
    if (!host.current) return;
    const t = new Terminal({
      cols: cast.width,
      rows: cast.height,
      disableStdin: true,
      cursorBlink: false,
      convertEol: false,
      fontFamily: '"JetBrains Mono", monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: THEME,
    });
    t.open(host.current);
    term.current = t;
    index.current = 0;
    position.current = 0;
    setShown(0);
    setPlaying(false);
    return () => {
      term.current = null;
      t.dispose();
    };
  }, [cast]);

  // Playback: each frame advances the position by the time passed × speed and draws what it reached.
  useEffect(() => {
    if (!playing) return;
    let last = performance.now();
    let frame = 0;
    const tick = (now: number) => {
      position.current = Math.min(cast.duration, position.current + ((now - last) / 1000) * speed);
      last = now;
      const to = indexAfter(cast, position.current);
      if (to > index.current) {
        draw(index.current, to);
        index.current = to;
      }
      setShown(position.current);
      if (position.current >= cast.duration) {
        setPlaying(false);
        return;
      }
      frame = requestAnimationFrame(tick);
    };
    frame = requestAnimationFrame(tick);
    return () => cancelAnimationFrame(frame);
  }, [playing, speed, cast, draw]);

  // A timeline click: jump there, paused, so what happened then is on screen.
  useEffect(() => {
    if (!seek) return;
    setPlaying(false);
    seekTo(seek.t);
  }, [seek, seekTo]);

  const toggle = () => {
    if (playing) return setPlaying(false);
    // Played to the end: Play starts over.
    if (position.current >= cast.duration) seekTo(0);
    setPlaying(true);
  };

  return (
    <section className="replay-player" aria-label={`Replay of ${label}`}>
      <div className="replay-controls">
        <button type="button" className="primary" onClick={toggle} aria-pressed={playing}>
          {playing ? 'Pause' : 'Play'}
        </button>
        <fieldset className="replay-speeds" aria-label="Speed">
          {SPEEDS.map((s) => (
            <button
              key={s}
              type="button"
              aria-pressed={speed === s}
              className={speed === s ? 'active' : undefined}
              onClick={() => setSpeed(s)}
            >
              {s}×
            </button>
          ))}
        </fieldset>
        <input
          type="range"
          className="replay-seek"
          aria-label="Position"
          min={0}
          max={Math.max(cast.duration, 0.001)}
          step={0.01}
          value={shown}
          onChange={(e) => {
            setPlaying(false);
            seekTo(Number(e.target.value));
          }}
        />
        <span className="mono small replay-clock" aria-live="off">
          {formatClock(shown)} / {formatClock(cast.duration)}
        </span>
      </div>
      <div className="replay-screen">
        <div ref={host} className="replay-terminal" />
      </div>
    </section>
  );
}
