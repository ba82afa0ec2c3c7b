"""Image and model operations: read a file, letterbox it, run the detector, crop, run the classifier.

Every step reproduces what DeepFaune 1.4.1 does through ultralytics 8.3.73, torchvision 0.21 and
Pillow, down to float32 rounding, so that the same weights give the same boxes and logits.
"""
