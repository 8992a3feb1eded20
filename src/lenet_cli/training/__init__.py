"""Training: the network (a plain ``nn.Module``), the LightningModule around it, metrics, the CUDA graph, DDP."""
