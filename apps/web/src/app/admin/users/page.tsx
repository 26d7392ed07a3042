import { UsersPage } from '../../../components/users-page';

export default function Users() {
  return <UsersPage />;
}
