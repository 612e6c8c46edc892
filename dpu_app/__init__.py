"""dpu_app: live sign-language letters on the ZCU104's DPU (VART) or on a PC (TFLite/TF).

Run it as `python3 -m dpu_app ...` from the folder that holds this package (see README.md).
The package imports only the standard library, numpy and cv2 (plus xir/vart on the board,
TensorFlow on a PC, both lazily); it owns the board contract (contract.py) that the toolchain
imports.
"""
