"""Generated protobuf and gRPC stubs for tokenweave.v1 (see scripts/gen_protos.py)."""
