import { Ide } from '../../../components/ide/ide';

export default async function SessionPage({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  // Keyed by the session: a link from one session to another (a fork) starts a fresh IDE, not this one's state.
  return <Ide key={id} sessionId={id} />;
}
