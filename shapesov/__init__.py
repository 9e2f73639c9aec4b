"""ShapesOV: the deterministic synthetic open-vocabulary detection set that the demo and the tests run on."""
