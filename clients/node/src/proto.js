// Loading tollgate/v1/tollgate.proto: one parse gives both the gRPC service
// (through @grpc/proto-loader) and the message types the errors decode.

import { existsSync, accessSync, constants } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The proto the package carries: `proto/tollgate/v1/tollgate.proto` inside it, a copy of the repository's
 * `proto/` kept current by `make proto` (and checked by `make proto-check`), so that the package folder, its
 * tarball and an install of either are whole.
 */
export const BUNDLED_PROTO = path.join(PACKAGE_DIR, "proto", "tollgate", "v1", "tollgate.proto");

/**
 * How proto-loader turns messages into objects: 64-bit integers as decimal
 * strings (converted to BigInt or number field by field in wire.js), enums as
 * their names, unset fields as their defaults (unset messages as null).
 * @type {protoLoader.Options}
 */
export const CONVERSION = Object.freeze({ longs: String, enums: String, defaults: true, oneofs: true });

/** The proto the client uses when no `protoPath` is given. */
export function defaultProtoPath() {
  if (!existsSync(BUNDLED_PROTO)) {
    throw new Error(
      `tollgate.proto not found at ${BUNDLED_PROTO}: the package is incomplete. ` +
        "Pass { protoPath } to point at tollgate/v1/tollgate.proto",
    );
  }
  return BUNDLED_PROTO;
}

/**
 * @typedef {object} Protos
 * @property {string} protoPath the file loaded
 * @property {grpc.ServiceClientConstructor} TollgateService the generated client class
 * @property {protobuf.Type} BudgetExceeded tollgate.v1.BudgetExceeded
 */

/** @type {Map<string, Protos>} */
const cache = new Map();

/**
 * The service and message types of a tollgate.proto, parsed once per file.
 * @param {string} [protoPath] the file; the default is {@link defaultProtoPath}
 * @returns {Protos}
 */
export function loadProtos(protoPath) {
  const file = path.resolve(protoPath ?? defaultProtoPath());
  let protos = cache.get(file);
  if (protos === undefined) {
    protos = parse(file);
    cache.set(file, protos);
  }
  return protos;
}

/** @param {string} file */
function parse(file) {
  const root = new protobuf.Root();
  // Imports are relative to the directory that holds tollgate/v1/; well-known
  // google/protobuf types come bundled with protobufjs.
  const includeDir = path.resolve(path.dirname(file), "..", "..");
  const resolvePath = root.resolvePath;
  root.resolvePath = (origin, target) => {
    if (!path.isAbsolute(target)) {
      const candidate = path.join(includeDir, target);
      try {
        accessSync(candidate, constants.R_OK);
        return candidate;
      } catch {
        // Fall through to protobufjs' own resolution (bundled well-known types).
      }
    }
    return resolvePath(origin, target);
  };
  root.loadSync(file, { keepCase: false });
  root.resolveAll();
  const definition = protoLoader.fromJSON(root.toJSON(), CONVERSION);
  const loaded = /** @type {any} */ (grpc.loadPackageDefinition(definition));
  const TollgateService = loaded?.tollgate?.v1?.TollgateService;
  if (typeof TollgateService !== "function") {
    throw new Error(`${file} does not define the service tollgate.v1.TollgateService`);
  }
  return Object.freeze({
    protoPath: file,
    TollgateService,
    BudgetExceeded: root.lookupType("tollgate.v1.BudgetExceeded"),
  });
}
