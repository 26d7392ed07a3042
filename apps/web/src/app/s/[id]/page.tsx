import { Ide } from '../../../components/ide/ide';

export default async function SessionPage({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  return <Ide sessionId={id} />;
}
