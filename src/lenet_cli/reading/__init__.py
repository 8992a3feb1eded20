"""Reading the digits in a picture without torch or Lightning: the pipeline (pictures → digit fields →
a classifier → text), and the front doors that use it. NumPy, OpenCV, Pillow and ONNX Runtime only."""
