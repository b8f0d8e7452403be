"""The runtime: experiment configs, the token-data cache, the trainer, checkpoints, run
directories, logging, signals, devices, plots and evaluation. Built on the model layer;
imports nothing from the CLI."""
