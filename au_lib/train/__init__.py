"""Training loops: MAE pre-training, fine-tuning and probing, TCAE; checkpoints, AMP, DDP."""
