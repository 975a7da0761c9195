// A minimal protobuf writer for the tests: the trailers the sidecar sends,
// written by hand with the wire format, not by the client's own code.

/** @param {number | bigint} value */
export function varint(value) {
  let n = BigInt(value);
  const out = [];
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
  return out;
}

export const intField = (number, value) => [...varint(number * 8), ...varint(value)];
export const bytesField = (number, bytes) => [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
export const stringField = (number, text) => bytesField(number, [...Buffer.from(text, "utf8")]);

/** The sidecar's ErrorInfo domain. */
export const DOMAIN = "tollgate.dev";

/** google.rpc.ErrorInfo: reason=1, domain=2, metadata=3 (a map entry: key=1, value=2). */
export function errorInfo(reason, domain = DOMAIN, metadata = {}) {
  return Buffer.from([
    ...stringField(1, reason),
    ...stringField(2, domain),
    ...Object.entries(metadata).flatMap(([key, value]) => bytesField(3, [...stringField(1, key), ...stringField(2, value)])),
  ]);
}

/** google.rpc.Status: code=1, message=2, details=3 (google.protobuf.Any: type_url=1, value=2). */
export function statusDetails(code, message, anys) {
  return Buffer.from([
    ...intField(1, code),
    ...stringField(2, message),
    ...anys.flatMap(([typeUrl, value]) => bytesField(3, [...stringField(1, typeUrl), ...bytesField(2, [...value])])),
  ]);
}

/** An Any of a google.rpc.ErrorInfo with `reason`, for statusDetails. */
export function errorInfoAny(reason, domain = DOMAIN) {
  return ["type.googleapis.com/google.rpc.ErrorInfo", errorInfo(reason, domain)];
}
