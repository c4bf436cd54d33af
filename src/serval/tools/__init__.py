"""Tools over a model repository, as libraries behind thin commands: ``convert`` (scikit-learn,
XGBoost, LightGBM -> ONNX) and ``optimize`` (ONNX graph optimization and INT8 quantization).
Each writes a new version that serves the same requests as the one it came from."""
