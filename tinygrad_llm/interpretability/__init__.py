"""Chapter 12: looking inside a model (attribution with planted ground truth, hooks, the logit lens, probes,
activation patching) and watching it train. Import the modules by their full path."""
