import { describe, expect, it } from 'vitest';
import { missingFolderMessage } from './files-router.ts';

describe('a write into a folder that does not exist', () => {
  it('names the folder and the createParents fix', () => {
    expect(missingFolderMessage('src/a/b.txt')).toBe(
      'cannot write src/a/b.txt: the folder src/a does not exist; pass createParents: true to make it',
    );
  });
});
