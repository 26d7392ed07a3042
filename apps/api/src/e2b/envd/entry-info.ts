import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { FileEntry } from '@studio/isolation';
import { toClientPath } from './envd-paths.ts';
import { FileType } from './gen/filesystem/filesystem_pb.ts';

/**
 * Owner and group reported for every entry: the sandbox's one user, by the name E2B code expects (Studio accepts
 * `user` as that user's name).
 */
export const ENTRY_OWNER = 'user';

const TYPES: Record<FileEntry['type'], FileType> = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
};

const TYPE_LETTER: Record<FileEntry['type'], string> = {
  file: '-',
  directory: 'd',
  symlink: 'l',
  other: '?',
};

/** `ls -l` style permissions of a mode, e.g. "-rw-r--r--". */
export function permissionsOf(type: FileEntry['type'], mode: number): string {
  let out = TYPE_LETTER[type];
  for (const shift of [6, 3, 0]) {
    const bits = (mode >> shift) & 7;
    out += `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
  }
  return out;
}

/** An entry at workspace-relative `relative` as envd's EntryInfo (init shape). */
export function entryInfo(relative: string, entry: FileEntry) {
  const name = relative === '' ? 'workspace' : (relative.split('/').pop() ?? relative);
  const mode = entry.mode & 0o7777;
  return {
    name,
    type: TYPES[entry.type],
    path: toClientPath(relative),
    size: BigInt(Math.max(0, Math.trunc(entry.size))),
    mode,
    permissions: permissionsOf(entry.type, mode),
    owner: ENTRY_OWNER,
    group: ENTRY_OWNER,
    modifiedTime: timestampFromMs(Math.trunc(entry.mtimeMs)),
  };
}
