"""What the Open Inference Protocol adapters (REST and gRPC) share: Triton's model
configuration, index states and parameters."""
