"""`lenet`: a LightningCLI that trains, evaluates and runs LeNet on MNIST-style digit images."""

__version__ = "0.3.0"
