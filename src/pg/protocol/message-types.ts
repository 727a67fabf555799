/**
 * Message type bytes and startup codes of the PostgreSQL frontend/backend protocol 3.0.
 * See https://www.postgresql.org/docs/current/protocol-message-formats.html
 *
 * The same byte means different messages depending on direction ('D' is Describe from the
 * client but DataRow from the server), hence two enums.
 */

/** Type byte of messages sent by the client (frontend). */
export const enum FrontendCode {
  Query = 0x51 /* Q */,
  Parse = 0x50 /* P */,
  Bind = 0x42 /* B */,
  Describe = 0x44 /* D */,
  Execute = 0x45 /* E */,
  Close = 0x43 /* C */,
  Flush = 0x48 /* H */,
  Sync = 0x53 /* S */,
  Terminate = 0x58 /* X */,
  CopyData = 0x64 /* d */,
  CopyDone = 0x63 /* c */,
  CopyFail = 0x66 /* f */,
  FunctionCall = 0x46 /* F */,
  /** Also SASLInitialResponse, SASLResponse and GSSResponse: the server knows which from context. */
  Password = 0x70 /* p */,
}

/** Type byte of messages sent by the server (backend). */
export const enum BackendCode {
  Authentication = 0x52 /* R */,
  ParameterStatus = 0x53 /* S */,
  BackendKeyData = 0x4b /* K */,
  ReadyForQuery = 0x5a /* Z */,
  RowDescription = 0x54 /* T */,
  DataRow = 0x44 /* D */,
  CommandComplete = 0x43 /* C */,
  EmptyQueryResponse = 0x49 /* I */,
  ErrorResponse = 0x45 /* E */,
  NoticeResponse = 0x4e /* N */,
  NotificationResponse = 0x41 /* A */,
  ParseComplete = 0x31 /* 1 */,
  BindComplete = 0x32 /* 2 */,
  CloseComplete = 0x33 /* 3 */,
  NoData = 0x6e /* n */,
  PortalSuspended = 0x73 /* s */,
  ParameterDescription = 0x74 /* t */,
  CopyInResponse = 0x47 /* G */,
  CopyOutResponse = 0x48 /* H */,
  CopyBothResponse = 0x57 /* W */,
  CopyData = 0x64 /* d */,
  CopyDone = 0x63 /* c */,
  NegotiateProtocolVersion = 0x76 /* v */,
  FunctionCallResponse = 0x56 /* V */,
}

/** StartupMessage protocol version 3.0: major 3 in the high 16 bits, minor 0 in the low. */
export const PROTOCOL_VERSION_3 = 196608;
/** SSLRequest code: 1234 in the high 16 bits, 5679 in the low. */
export const SSL_REQUEST_CODE = 80877103;
/** GSSENCRequest code: 1234 in the high 16 bits, 5680 in the low. */
export const GSSENC_REQUEST_CODE = 80877104;
/** CancelRequest code: 1234 in the high 16 bits, 5678 in the low. */
export const CANCEL_REQUEST_CODE = 80877102;
