"""Models: the MCM channel-mixing MAE, TCAE, AU classifier heads and supervised baselines."""
