import { SnapshotsPage } from '../../components/snapshots-page';

export default function Snapshots() {
  return <SnapshotsPage />;
}
