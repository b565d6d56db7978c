"""Where a photo has been: its perceptual fingerprint, its earlier appearances in the stream (a
near-duplicate index shared by the consumer group), its Content Credentials (C2PA) and when it
was taken."""
