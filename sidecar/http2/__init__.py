"""HTTP/2 and gRPC: frames of each direction (`frames`), streams as exchanges (`tracker`), gRPC status (`grpc`)."""
