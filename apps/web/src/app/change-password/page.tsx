import { ChangePasswordScreen } from '../../components/change-password-screen';

export default function ChangePassword() {
  return <ChangePasswordScreen />;
}
