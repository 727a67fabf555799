/**
 * First bytes of RESP2 and RESP3 values.
 * See https://redis.io/docs/latest/develop/reference/protocol-spec/#resp-protocol-description
 */
export const enum RespType {
  SimpleString = 0x2b /* + */,
  SimpleError = 0x2d /* - */,
  Integer = 0x3a /* : */,
  BulkString = 0x24 /* $ */,
  Array = 0x2a /* * */,
  /** RESP3. */
  Null = 0x5f /* _ */,
  /** RESP3. */
  Double = 0x2c /* , */,
  /** RESP3. */
  Boolean = 0x23 /* # */,
  /** RESP3. */
  BlobError = 0x21 /* ! */,
  /** RESP3. */
  Verbatim = 0x3d /* = */,
  /** RESP3. */
  BigNumber = 0x28 /* ( */,
  /** RESP3. */
  Map = 0x25 /* % */,
  /** RESP3. */
  Set = 0x7e /* ~ */,
  /** RESP3: out-of-band data (pub/sub messages, client-side caching invalidations). */
  Push = 0x3e /* > */,
  /** RESP3: auxiliary map that precedes the value it describes; not part of the reply. */
  Attribute = 0x7c /* | */,
}
