import { describe, expect, it } from 'vitest';
import {
  addTerminalTab,
  initialTerminalTabs,
  MAX_TERMINALS,
  parseTerminalTabs,
  removeTerminalTab,
  serializeTerminalTabs,
  setTerminalId,
  terminalTabsStorageKey,
} from './terminal-tabs.ts';

const ID_A = `trm_${'a'.repeat(22)}`;
const ID_B = `trm_${'B_-9'.repeat(5)}xy`;

describe('terminal tabs kept in sessionStorage', () => {
  it('reads back what it wrote: order, names, shells and the active tab', () => {
    const state = {
      tabs: [
        { key: 't1', name: 'Terminal 1', terminalId: ID_A },
        { key: 't3', name: 'Terminal 2' },
        { key: 't4', name: 'Terminal 3', terminalId: ID_B },
      ],
      active: 't3',
    };
    expect(parseTerminalTabs(serializeTerminalTabs(state))).toEqual(state);
    expect(terminalTabsStorageKey('ses_x')).toBe('studio.terminals.ses_x');
  });

  it('ignores junk: nothing usable is undefined', () => {
    for (const raw of [
      null,
      undefined,
      '',
      '{',
      'null',
      '42',
      '"x"',
      '[]',
      '{}',
      '{"tabs":{}}',
      '{"tabs":[]}',
    ])
      expect(parseTerminalTabs(raw)).toBeUndefined();
    expect(
      parseTerminalTabs(JSON.stringify({ tabs: [1, null, 'x', { key: 'nope' }], active: 't1' })),
    ).toBeUndefined();
  });

  it('drops bad entries one by one and repairs what it can', () => {
    const raw = JSON.stringify({
      tabs: [
        { key: 't1', name: 'Terminal 1', terminalId: 'trm_short' },
        { key: 't1', name: 'duplicate key' },
        { key: '<img src=x>', name: 'bad key' },
        { key: 't2', name: 'x'.repeat(41), terminalId: ID_A },
        { key: 't5', name: '   ' },
        { key: 't6', name: 'Terminal 6' },
        { key: 't7', name: 'one too many' },
      ],
      active: 't9',
    });
    expect(parseTerminalTabs(raw)).toEqual({
      tabs: [
        { key: 't1', name: 'Terminal 1' },
        { key: 't2', name: 'Terminal 2', terminalId: ID_A },
        { key: 't5', name: 'Terminal 3' },
        { key: 't6', name: 'Terminal 6' },
      ],
      active: 't1',
    });
    expect(MAX_TERMINALS).toBe(4);
  });

  it('adds tabs up to the limit, with the lowest free name and a fresh key', () => {
    let state = initialTerminalTabs();
    expect(state).toEqual({ tabs: [{ key: 't1', name: 'Terminal 1' }], active: 't1' });
    state = addTerminalTab(state) ?? state;
    expect(state.active).toBe('t2');
    state = removeTerminalTab(state, 't1');
    expect(state).toEqual({ tabs: [{ key: 't2', name: 'Terminal 2' }], active: 't2' });
    state = addTerminalTab(state) ?? state;
    expect(state.tabs).toEqual([
      { key: 't2', name: 'Terminal 2' },
      { key: 't3', name: 'Terminal 1' },
    ]);
    state = addTerminalTab(addTerminalTab(state) ?? state) ?? state;
    expect(state.tabs.map((t) => t.name)).toEqual(['Terminal 2', 'Terminal 1', 'Terminal 3', 'Terminal 4']);
    expect(addTerminalTab(state)).toBeUndefined();
  });

  it('shows a neighbour when the shown tab closes, and nothing once all are closed', () => {
    const three = {
      tabs: [
        { key: 't1', name: 'Terminal 1' },
        { key: 't2', name: 'Terminal 2' },
        { key: 't3', name: 'Terminal 3' },
      ],
      active: 't2',
    };
    expect(removeTerminalTab(three, 't2').active).toBe('t3');
    expect(removeTerminalTab(three, 't1').active).toBe('t2');
    expect(removeTerminalTab({ ...three, active: 't3' }, 't3').active).toBe('t2');
    expect(removeTerminalTab(three, 't9')).toBe(three);
    expect(removeTerminalTab(initialTerminalTabs(), 't1')).toEqual({ tabs: [], active: '' });
  });

  it("sets and clears a tab's shell", () => {
    const state = initialTerminalTabs();
    const withId = setTerminalId(state, 't1', ID_A);
    expect(withId.tabs[0]).toEqual({ key: 't1', name: 'Terminal 1', terminalId: ID_A });
    expect(setTerminalId(withId, 't1', ID_A)).toBe(withId);
    expect(setTerminalId(withId, 't1', undefined).tabs[0]).toEqual({ key: 't1', name: 'Terminal 1' });
    expect(setTerminalId(withId, 't2', ID_B)).toBe(withId);
  });
});
