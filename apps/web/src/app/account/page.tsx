import { AccountPage } from '../../components/account-page';

export default function Account() {
  return <AccountPage />;
}
