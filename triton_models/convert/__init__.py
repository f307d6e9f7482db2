"""dlib ResNet -> ONNX conversion used by triton_models/build.py."""
