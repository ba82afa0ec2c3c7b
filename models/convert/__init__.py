"""Official DeepFaune checkpoints to the ONNX contract without PyTorch (issue 17).

`torchfree_pickle` reads a `.pt` file with a restricted unpickler (tensors as NumPy arrays, nothing executed);
`read` turns DeepFaune's files into arrays under timm's keys; `vit` writes the classifier graph with onnx.helper.
Only numpy and onnx are needed: both are in the default install.
"""
