"""What runs write besides checkpoints: training curves, the evaluation report, predictions, sample images, figures."""
