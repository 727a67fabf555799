/**
 * MD5 password authentication (AuthenticationMD5Password, 'R' code 5): the client answers with
 * `'md5' + md5hex(md5hex(password + user) + salt)` in a PasswordMessage, where `md5hex(password + user)` is
 * what PostgreSQL stores in `pg_authid` (without the 'md5' prefix) and `salt` is the 4 bytes the server sent.
 * See https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP.
 */
import { createHash } from 'node:crypto';

/** Lower-case hex MD5 of the concatenated parts. */
function md5Hex(...parts: Buffer[]): string {
  const hash = createHash('md5');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

/**
 * The PasswordMessage body (without the terminating NUL, which the framer adds) answering
 * AuthenticationMD5Password: `'md5' + md5hex(md5hex(password + user) + salt)`, 35 characters.
 */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  const inner = md5Hex(Buffer.from(password, 'utf8'), Buffer.from(user, 'utf8'));
  return 'md5' + md5Hex(Buffer.from(inner, 'ascii'), salt);
}
