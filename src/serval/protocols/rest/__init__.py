"""REST: the Open Inference Protocol (KServe V2) with Triton's extensions, and TF Serving V1."""
