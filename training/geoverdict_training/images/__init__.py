"""From bytes to model inputs: header checks and limits, decoding, transforms, device decoding."""
