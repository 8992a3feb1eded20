"""Saving and loading checkpoints safely, and the model bundled with lenet-cli."""
