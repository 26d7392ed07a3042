import { describe, expect, it } from 'vitest';
import {
  formatAge,
  formatBytes,
  hasBinaryExtension,
  iconKindOf,
  languageOf,
  looksBinary,
  newEntryPath,
} from './file-types.ts';

describe('file types', () => {
  it('detects the language by extension', () => {
    expect(languageOf('a/b/app.ts')).toBe('typescript');
    expect(languageOf('x.PY')).toBe('python');
    expect(languageOf('index.html')).toBe('html');
    expect(languageOf('README.md')).toBe('markdown');
    expect(languageOf('style.css')).toBe('css');
    expect(languageOf('data.json')).toBe('json');
    expect(languageOf('main.mjs')).toBe('javascript');
    expect(languageOf('Makefile')).toBe('text');
    expect(languageOf('.bashrc')).toBe('text');
  });

  it('guards binary files by name and by content', () => {
    expect(hasBinaryExtension('logo.PNG')).toBe(true);
    expect(hasBinaryExtension('app.js')).toBe(false);
    expect(looksBinary('hello\nworld\t!')).toBe(false);
    expect(looksBinary('ab\u0000cd')).toBe(true);
    expect(looksBinary('\u0001\u0002\u0003\u0004abc')).toBe(true);
    expect(looksBinary('')).toBe(false);
  });

  it('formats sizes and ages', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(2048)).toBe('2.0 KiB');
    expect(formatAge('2020-01-01T00:00:00.000Z', Date.parse('2020-01-01T00:02:05.000Z'))).toBe('2 min');
  });
});

describe('new entries and icons', () => {
  it('a plain name goes into the selected folder; a path with a slash is from the workspace root', () => {
    expect(newEntryPath('docs', 'a.txt')).toBe('docs/a.txt');
    expect(newEntryPath('', ' a.txt ')).toBe('a.txt');
    expect(newEntryPath('docs', 'src/a/b.txt')).toBe('src/a/b.txt');
    expect(newEntryPath('docs', '/src/b.txt')).toBe('src/b.txt');
    expect(newEntryPath('docs', './src/b.txt')).toBe('src/b.txt');
  });

  it('icons by type and extension', () => {
    expect(iconKindOf('src', 'directory')).toBe('folder');
    expect(iconKindOf('src', 'directory', true)).toBe('folder-open');
    expect(iconKindOf('app.TSX', 'file')).toBe('ts');
    expect(iconKindOf('index.mjs', 'file')).toBe('js');
    expect(iconKindOf('README.md', 'file')).toBe('markdown');
    expect(iconKindOf('Dockerfile', 'file')).toBe('config');
    expect(iconKindOf('package-lock.json', 'file')).toBe('lock');
    expect(iconKindOf('notes', 'file')).toBe('text');
    expect(iconKindOf('x', 'symlink')).toBe('link');
  });
});
