'use client';
import { type ReactNode, type Ref, useImperativeHandle } from 'react';
import {
  Group,
  type LayoutStorage,
  Panel,
  type PanelImperativeHandle,
  Separator,
  useDefaultLayout,
  usePanelRef,
} from 'react-resizable-panels';

/** The panels that can be shown and hidden (the command palette's "Toggle …"). */
export type ToggleablePanel = 'sidebar' | 'bottom' | 'side';

/** Shows or hides a panel of the layout. */
export interface IdeLayoutHandle {
  toggle(panel: ToggleablePanel): void;
  /** Expands the panel if it is collapsed. */
  show(panel: ToggleablePanel): void;
}

// The browser's localStorage, or nothing while rendering on the server (the layout then starts from defaults).
const storage = (): LayoutStorage | undefined =>
  typeof window === 'undefined' ? undefined : window.localStorage;

/** The localStorage key prefix of a session's panel layout (one entry per group, by react-resizable-panels). */
export const layoutKey = (sessionId: string, group: string) => `studio.ide.${sessionId}.${group}`;

function toggle(panel: PanelImperativeHandle | null) {
  if (!panel) return;
  if (panel.isCollapsed()) panel.expand();
  else panel.collapse();
}

/**
 * The IDE's resizable panels (react-resizable-panels): sidebar | editor over bottom panel | preview over activity.
 * Every separator drags with the mouse and moves with the arrow keys when focused; the sizes are kept per session
 * in this browser's localStorage, so a reload (or coming back to the session) finds them as they were.
 */
export function IdeLayout({
  sessionId,
  sidebar,
  editor,
  bottom,
  preview,
  activity,
  handle,
}: {
  sessionId: string;
  sidebar: ReactNode;
  editor: ReactNode;
  bottom: ReactNode;
  preview: ReactNode;
  activity: ReactNode;
  handle?: Ref<IdeLayoutHandle>;
}) {
  const columns = useDefaultLayout({ id: layoutKey(sessionId, 'columns'), storage: storage() });
  const center = useDefaultLayout({ id: layoutKey(sessionId, 'center'), storage: storage() });
  const side = useDefaultLayout({ id: layoutKey(sessionId, 'side'), storage: storage() });
  const sidebarPanel = usePanelRef();
  const bottomPanel = usePanelRef();
  const sidePanel = usePanelRef();
  useImperativeHandle(handle, () => {
    const refOf = (panel: ToggleablePanel) =>
      panel === 'sidebar' ? sidebarPanel : panel === 'bottom' ? bottomPanel : sidePanel;
    return {
      toggle: (panel) => toggle(refOf(panel).current),
      show: (panel) => {
        const p = refOf(panel).current;
        if (p?.isCollapsed()) p.expand();
      },
    };
  }, [sidebarPanel, bottomPanel, sidePanel]);

  return (
    <Group
      orientation="horizontal"
      className="ide-grid"
      id="ide-columns-group"
      defaultLayout={columns.defaultLayout}
      onLayoutChanged={columns.onLayoutChanged}
    >
      <Panel
        id="ide-sidebar"
        panelRef={sidebarPanel}
        className="ide-panel ide-files"
        defaultSize="18%"
        minSize="140px"
        collapsible
      >
        {sidebar}
      </Panel>
      <Separator className="ide-separator" id="sidebar-separator" aria-label="Resize the sidebar" />
      <Panel id="ide-center" className="ide-panel" minSize="25%">
        <Group
          orientation="vertical"
          id="ide-center-group"
          defaultLayout={center.defaultLayout}
          onLayoutChanged={center.onLayoutChanged}
        >
          <Panel id="ide-editor" className="ide-panel ide-main" minSize="15%">
            <section className="ide-panel" aria-label="Editor">
              {editor}
            </section>
          </Panel>
          <Separator className="ide-separator" id="bottom-separator" aria-label="Resize the bottom panel" />
          <Panel
            id="ide-bottom"
            panelRef={bottomPanel}
            className="ide-panel"
            defaultSize="40%"
            minSize="80px"
            collapsible
          >
            {bottom}
          </Panel>
        </Group>
      </Panel>
      <Separator className="ide-separator" id="side-separator" aria-label="Resize the preview and activity" />
      <Panel
        id="ide-side"
        panelRef={sidePanel}
        className="ide-panel ide-side"
        defaultSize="28%"
        minSize="200px"
        collapsible
      >
        <Group
          orientation="vertical"
          id="ide-side-group"
          defaultLayout={side.defaultLayout}
          onLayoutChanged={side.onLayoutChanged}
        >
          <Panel id="ide-preview" className="ide-panel side-preview" minSize="80px">
            <section className="ide-panel" aria-label="Preview">
              <h2 className="panel-title">Preview</h2>
              {preview}
            </section>
          </Panel>
          <Separator className="ide-separator" id="activity-separator" aria-label="Resize the activity" />
          <Panel
            id="ide-activity"
            className="ide-panel side-activity"
            defaultSize="40%"
            minSize="60px"
            collapsible
          >
            <section aria-label="Activity">
              <h2 className="panel-title">Activity</h2>
              {activity}
            </section>
          </Panel>
        </Group>
      </Panel>
    </Group>
  );
}
