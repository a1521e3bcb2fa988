"""Chapter 13: hyperparameter search (search spaces with constraints, grid, random, successive halving and
Hyperband, Gaussian-process Bayesian optimisation). Import the modules by their full path."""
