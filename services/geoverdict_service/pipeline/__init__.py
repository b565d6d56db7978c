"""The stages of one batch, in the order the consumer runs them: intake, lookup, predictions,
delivery, checkpoint; and the pause while the model server is unavailable."""
