"""A trained model as a model server runs it: the bundle, the archive, replies, the handler."""
