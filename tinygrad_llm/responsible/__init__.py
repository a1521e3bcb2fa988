"""Chapter 14: robustness, fairness, privacy and safety (robust losses, adversarial examples, fairness metrics and
mitigation, DP-SGD and its accountant, membership and canary attacks, federated averaging, restricted decoding).
Import the modules by their full path."""
