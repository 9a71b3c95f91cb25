"""The Open Inference Protocol (v2) over gRPC: the transport beside `fastinfer.api` (HTTP).

Imports grpcio, an optional dependency (the `grpc` extra): nothing imports this package unless
`--grpc-port` is set, so a server without grpcio runs HTTP alone.
"""
