"""Loaded models of the VART emulation, kept across re-imports of the fake `vart` module
(tests remove the fake vart/xir from sys.modules after each test; reloading the quantized
Keras model each time would cost seconds)."""
import threading

MODELS: dict = {}
LOCK = threading.Lock()
