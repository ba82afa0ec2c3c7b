"""The built-in plugins: DeepFaune's backend and one adapter per data manager.

Each module here is an ordinary pluggy plugin registered through this package's entry points
(group ``deepfaune``), exactly as an outside package would register its own.
"""
