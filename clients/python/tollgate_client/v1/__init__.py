"""Generated protobuf and gRPC modules for tollgate.v1."""
