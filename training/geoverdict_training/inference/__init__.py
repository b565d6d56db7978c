"""From logits to probabilities: the hierarchical product, temperature scaling, the predictor."""
