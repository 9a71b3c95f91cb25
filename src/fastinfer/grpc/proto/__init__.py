"""The v2 gRPC protocol's messages and service: `grpc_service.proto` and the modules `make
grpc-stubs` generates from it (committed; regenerate after changing the .proto)."""
