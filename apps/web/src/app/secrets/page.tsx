import { SecretsPage } from '../../components/secrets-page';

export default function Secrets() {
  return <SecretsPage />;
}
