"""Golden fingerprints: committed scores and Q/K/V values of every metric on the tiny test models."""
